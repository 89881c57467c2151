// The console's frame: sign-in, the tabs (#keys, #tenants, #backends) and what the pages share (the limit
// fields, reading them back, errors). Each page is its own file (console-keys.js, console-tenants.js,
// console-backends.js) with one method, load(); PAGES below is the registry. Every action is an admin API
// call with the key from session storage as a bearer header; nothing is inserted as HTML.
"use strict";
SMR.console = (() => {
  const $ = (id) => document.getElementById(id);
  const { el } = SMR;
  const LIMITS = [
    ["budget_usd", "Budget (USD)", "number", "any"], ["rate_limit_rpm", "Requests / min", "number", "1"],
    ["rate_limit_tpm", "Tokens / min", "number", "1"], ["rate_limit_rpd", "Requests / day", "number", "1"]];
  const TIERS = ["simple", "medium", "complex"];

  // Inputs for the five limit fields, filled from `limits` (a key or a tenant's LimitSet).
  function limitInputs(box, limits) {
    box.replaceChildren();
    for (const [name, label, type, step] of LIMITS) {
      const input = el("input", { name, type, min: "0", step });
      if (limits[name] != null) input.value = String(limits[name]);
      box.append(el("label", {}, label, input));
    }
    const period = el("select", { name: "budget_period" });
    for (const p of ["total", "day", "month"]) period.append(el("option", { text: p }));
    period.value = limits.budget_period || "total";
    box.append(el("label", {}, "Budget period", period));
    const tiers = el("fieldset", {}, el("legend", { text: "Allowed tiers (none ticked: every tier)" }));
    for (const t of TIERS) {
      const tick = el("input", { type: "checkbox", name: "tier", value: t });
      tick.checked = Boolean(limits.allowed_tiers && limits.allowed_tiers.includes(t));
      tiers.append(el("label", { class: "tick" }, tick, t));
    }
    box.append(tiers);
  }

  // The limit fields under `root` as the API takes them: an empty field is null (no limit of that kind).
  function readLimits(root) {
    const out = {};
    for (const [name] of LIMITS) {
      const v = root.querySelector(`[name=${name}]`).value.trim();
      out[name] = v === "" ? null : Number(v);
    }
    out.budget_period = root.querySelector("[name=budget_period]").value;
    const ticked = [...root.querySelectorAll("input[name=tier]:checked")].map((t) => t.value);
    out.allowed_tiers = ticked.length ? ticked : null;
    return out;
  }

  const post = (path, method, body) => SMR.json(path, {
    method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

  function error(e) {
    const box = $("error");
    if (!e) { box.hidden = true; return; }
    box.textContent = e.status === 403 ? "The console needs the admin key (" + e.message + "). A client key " +
      "sees its own tenant's spend and requests on the dashboard." : e.message;
    box.hidden = false;
    if (e.status === 401) $("who").textContent = "key refused";
    if (e.status === 403) $("who").textContent = "not the admin key";
  }

  function limitsText(k) {
    const parts = [];
    if (k.rate_limit_rpm != null) parts.push(k.rate_limit_rpm + " req/min");
    if (k.rate_limit_tpm != null) parts.push(k.rate_limit_tpm + " tok/min");
    if (k.rate_limit_rpd != null) parts.push(k.rate_limit_rpd + " req/day");
    if (k.allowed_tiers) parts.push("tiers: " + k.allowed_tiers.join(", "));
    return parts.join("; ") || "none";
  }

  let PAGES = {};
  async function show() {
    error(null);
    const signed = SMR.showSignedIn();
    const tab = (location.hash.slice(1) in PAGES) ? location.hash.slice(1) : "keys";
    for (const name of Object.keys(PAGES)) $(name).hidden = !signed || name !== tab;
    for (const a of $("tabs").querySelectorAll("a")) a.classList.toggle("here", a.dataset.tab === tab);
    if (!signed) { $("who").textContent = "not signed in"; return; }
    $("who").textContent = "admin";
    try {
      await PAGES[tab].load();
      document.body.dataset.loaded = tab + ":" + Date.now();
    } catch (e) { error(e); $(tab).hidden = e.status === 401 || e.status === 403; }
  }

  document.addEventListener("DOMContentLoaded", () => {
    PAGES = { keys: SMR.keysPage, tenants: SMR.tenantsPage, backends: SMR.backendsPage };
    for (const page of Object.values(PAGES)) page.init();
    SMR.signin($("signin"), show);
    window.addEventListener("hashchange", show);
    show();
  });
  return { limitInputs, readLimits, post, error, limitsText, reload: show };
})();
