// The console's tenants page: a tenant's limits (GET / PUT /v1/tenants/{tenant}/limits), shared by all its
// keys, and the tenants the key list names with their keys and spend (from GET /v1/keys).
"use strict";
SMR.tenantsPage = (() => {
  const $ = (id) => document.getElementById(id);
  const { el } = SMR;
  const C = () => SMR.console;
  const path = (t) => "/v1/tenants/" + encodeURIComponent(t) + "/limits";

  async function open(tenant) {
    const form = $("tenant-form");
    form.elements.tenant.value = tenant;
    const got = await SMR.json(path(tenant));
    C().limitInputs($("tenant-limits"), got.limits);
    form.dataset.tenant = tenant;
    $("tenant-saved").textContent = "";
  }

  async function load() {
    const keys = (await SMR.json("/v1/keys")).data;
    const tenants = new Map();
    for (const k of keys) {
      const t = tenants.get(k.tenant) || { keys: 0, active: 0, lineages: new Map() };
      t.keys += 1;
      if (!k.revoked_at && !(k.expires_at && new Date(k.expires_at) <= new Date())) t.active += 1;
      t.lineages.set(k.lineage || k.id, k.spend_usd);  // a rotated chain's keys share one spend
      tenants.set(k.tenant, t);
    }
    const body = $("tenant-table").querySelector("tbody");
    const names = $("tenant-names");
    body.replaceChildren();
    names.replaceChildren();
    for (const [name, t] of [...tenants].sort((a, b) => a[0].localeCompare(b[0]))) {
      const spend = [...t.lineages.values()].reduce((a, b) => a + b, 0);
      const link = el("a", { href: "#tenants", text: name });
      link.addEventListener("click", (e) => { e.preventDefault(); open(name).catch(C().error); });
      body.append(el("tr", { "data-tenant": name }, el("td", {}, link), el("td", { class: "num", text: String(t.keys) }),
        el("td", { class: "num", text: String(t.active) }), el("td", { class: "num", text: SMR.usd(spend) })));
      names.append(el("option", { value: name }));
    }
    if (!tenants.size) body.append(el("tr", {}, el("td", { colspan: "4", class: "muted", text: "no keys yet" })));
    if (!$("tenant-limits").children.length) C().limitInputs($("tenant-limits"), {});
  }

  function init() {
    const form = $("tenant-form");
    $("tenant-load").addEventListener("click", () => {
      const t = form.elements.tenant.value.trim();
      if (t) open(t).catch(C().error);
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const t = form.elements.tenant.value.trim();
      try {
        const saved = await C().post(path(t), "PUT", C().readLimits(form));
        C().limitInputs($("tenant-limits"), saved.limits);
        $("tenant-saved").textContent = "saved: " + C().limitsText(saved.limits) +
          (saved.limits.budget_usd == null ? "" : `; budget ${SMR.usd(saved.limits.budget_usd)} / ${saved.limits.budget_period}`);
        C().error(null);
      } catch (err) { C().error(err); }
    });
  }
  return { init, load };
})();
