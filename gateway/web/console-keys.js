// The console's keys page: create a key with its limits and budget (the key is shown once), the key list
// with each key's spend in its budget period and the share of its budget used (GET /v1/keys), and per key:
// edit limits (PATCH), rotate with a grace period (POST .../rotate), revoke (DELETE), its last requests.
"use strict";
SMR.keysPage = (() => {
  const $ = (id) => document.getElementById(id);
  const { el } = SMR;
  const C = () => SMR.console;
  const COLUMNS = 10;

  function state(k) {
    if (k.revoked_at) return "revoked";
    if (k.expires_at && new Date(k.expires_at) <= new Date()) return "expired";
    if (k.expires_at) return "expires " + SMR.when(k.expires_at).slice(0, 16);
    return "active";
  }

  function used(k) {
    if (k.budget_usd == null) return el("span", { class: "muted", text: "no budget" });
    const share = k.budget_usd > 0 ? k.spend_usd / k.budget_usd : 1;
    const fill = el("span", { class: "fill" + (share >= 1 ? " over" : "") });
    fill.style.width = (100 * Math.min(1, share)).toFixed(1) + "%";
    return el("span", { class: "used" }, el("span", { class: "track" }, fill), el("span", { text: SMR.pct(share) }));
  }

  function showNewKey(title, key) {
    $("new-key-title").textContent = title;
    $("new-key-value").value = key;
    $("new-key").hidden = false;
    $("new-key-value").select();
  }

  // A panel under the key's row (one at a time per key).
  function extra(tr, kind, ...content) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("extra")) next.remove();
    const cell = el("td", { colspan: String(COLUMNS) }, ...content);
    const row = el("tr", { class: "extra", "data-for": tr.dataset.id, "data-kind": kind }, cell);
    tr.after(row);
    return row;
  }

  function editLimits(tr, k) {
    const box = el("div", { class: "fields" });
    C().limitInputs(box, k);
    const form = el("form", { class: "editor" }, box, el("button", { type: "submit", text: "Save limits" }),
                    el("button", { type: "button", class: "secondary", text: "Cancel" }));
    form.querySelector("button.secondary").addEventListener("click", () => form.closest("tr").remove());
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try { await C().post("/v1/keys/" + k.id, "PATCH", C().readLimits(form)); await load(); } catch (err) { C().error(err); }
    });
    extra(tr, "edit", form);
  }

  function rotate(tr, k) {
    const grace = el("input", { type: "number", min: "0", step: "any", name: "grace_s", placeholder: "default" });
    const go = el("button", { type: "button", text: "Rotate now" });
    go.addEventListener("click", async () => {
      const body = grace.value.trim() === "" ? {} : { grace_s: Number(grace.value) };
      try {
        const made = await C().post("/v1/keys/" + k.id + "/rotate", "POST", body);
        showNewKey(`Rotated "${k.name}": its new key (the old one works for the grace period)`, made.key);
        await load();
      } catch (err) { C().error(err); }
    });
    extra(tr, "rotate", el("label", { class: "inline" }, "Old key keeps working for (seconds) ", grace), go);
  }

  function revoke(tr, k) {
    const sure = el("button", { type: "button", class: "danger", text: "Revoke it: it stops working at once" });
    sure.addEventListener("click", async () => {
      try { await SMR.json("/v1/keys/" + k.id, { method: "DELETE" }); await load(); } catch (err) { C().error(err); }
    });
    extra(tr, "revoke", sure);
  }

  async function requests(tr, k) {
    const rows = (await SMR.json("/v1/requests?limit=20&key=" + encodeURIComponent(k.id))).data;
    const body = el("tbody");
    for (const r of rows) {
      const link = el("a", { href: "/dashboard#request=" + encodeURIComponent(r.id), text: r.id });
      body.append(el("tr", { "data-status": String(r.status) },
        el("td", { text: SMR.when(r.created) }),
        el("td", { text: String(r.status) + (r.error_type ? " " + r.error_type : "") }),
        el("td", { text: r.tier || (r.status >= 400 ? "error" : "direct") }), el("td", { text: r.model || "-" }),
        el("td", { class: "num", text: SMR.usd(r.cost_usd) }), el("td", {}, link)));
    }
    const head = el("tr");
    for (const h of ["time (UTC)", "status", "tier", "model", "cost", "id"]) head.append(el("th", { text: h }));
    const table = el("table", { class: "requests" }, el("thead", {}, head), body);
    extra(tr, "requests", rows.length ? table : el("span", { class: "muted", text: "no requests yet" }));
  }

  function keyRow(k) {
    const actions = el("td", { class: "actions" });
    const tr = el("tr", { "data-id": k.id, "data-name": k.name, "data-state": state(k).split(" ")[0] },
      el("td", { class: "clip", text: k.name, title: k.name }), el("td", { class: "clip", text: k.tenant, title: k.tenant }),
      el("td", { class: "muted", text: k.prefix.slice(0, 8) + "…" }),
      el("td", { text: state(k) }), el("td", { text: SMR.when(k.created_at).slice(0, 16) }),
      el("td", { class: "wrap", text: C().limitsText(k) }),
      el("td", { class: "num", text: k.budget_usd == null ? "-" : `${SMR.usd(k.budget_usd)} / ${k.budget_period}` }),
      el("td", { class: "num spend", text: SMR.usd(k.spend_usd) }), el("td", {}, used(k)), actions);
    const live = !k.revoked_at && state(k) !== "expired";
    const act = { requests: () => requests(tr, k).catch(C().error) };
    if (live) Object.assign(act, { edit: () => editLimits(tr, k), rotate: () => rotate(tr, k), revoke: () => revoke(tr, k) });
    for (const [name, fn] of Object.entries(act)) {
      const b = el("button", { type: "button", class: "secondary small", "data-action": name, text: name });
      b.addEventListener("click", fn);
      actions.append(b);
    }
    return tr;
  }

  async function load() {
    const tenant = $("key-tenant").value.trim();
    const keys = (await SMR.json("/v1/keys" + (tenant ? "?tenant=" + encodeURIComponent(tenant) : ""))).data;
    const body = $("key-table").querySelector("tbody");
    body.replaceChildren(...keys.slice().reverse().map(keyRow));
    if (!keys.length) body.append(el("tr", {}, el("td", { colspan: String(COLUMNS), class: "muted", text: "no keys" })));
    body.dataset.at = String(Date.now());
  }

  function init() {
    const form = $("create-key");
    C().limitInputs($("create-limits"), {});  // the limit fields: the same list as every limits editor
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = Object.assign(C().readLimits(form), {
        name: form.elements.name.value.trim(), tenant: form.elements.tenant.value.trim() });
      const days = form.elements.expires_days.value.trim();
      if (days !== "") body.expires_in_s = Number(days) * 86400;
      try {
        const made = await C().post("/v1/keys", "POST", body);
        showNewKey(`New key "${made.name}" for tenant "${made.tenant}"`, made.key);
        form.reset();
        C().limitInputs($("create-limits"), {});
        await load();
      } catch (err) { C().error(err); }
    });
    $("new-key-done").addEventListener("click", () => { $("new-key-value").value = ""; $("new-key").hidden = true; });
    $("keys-refresh").addEventListener("click", () => load().catch(C().error));
    $("key-tenant").addEventListener("change", () => load().catch(C().error));
  }
  return { init, load };
})();
