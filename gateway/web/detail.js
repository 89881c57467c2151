// A request's detail (GET /v1/requests/{id}): its status, why it was routed as it was (the `smr` object),
// fallbacks, the cascade, cost, and the prompt when the gateway logs prompts (log.prompts). Used by the
// dashboard (click an id in the table: #request=<id>). Everything goes in as text.
"use strict";
SMR.requestDetail = (() => {
  const { el } = SMR;

  function row(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: label }), el("dd", { "data-field": label }, value instanceof Node ? value : String(value)));
  }

  function list(items) {
    const ul = el("ul");
    for (const item of items) ul.append(el("li", { text: String(item) }));
    return ul;
  }

  const money = (x) => (x === null || x === undefined ? "" : SMR.usd(x));

  function render(box, r) {
    const s = r.smr || {};
    const dl = el("dl", { class: "detail" });
    row(dl, "id", r.id);
    row(dl, "time (UTC)", SMR.when(r.created));
    row(dl, "endpoint", r.endpoint);
    row(dl, "status", r.status + (r.error_type ? " " + r.error_type : ""));
    row(dl, "tenant", r.tenant);
    row(dl, "client request id", r.client_request_id);
    row(dl, "latency", Math.round(r.latency_ms) + " ms" + (r.stream ? " (streamed)" : ""));
    row(dl, "tokens", `${r.prompt_tokens} in / ${r.completion_tokens} out`);
    row(dl, "route", s.route);
    row(dl, "tier", s.tier || (r.status >= 400 ? "error" : ""));
    row(dl, "model", s.model || "-");
    row(dl, "classifier", s.classifier);
    row(dl, "score", s.score == null ? "" : s.score.toFixed(4) + (s.cutoffs ? ` (cut-offs ${s.cutoffs.join(", ")}, margin ${s.margin})` : ""));
    if (s.reasons && s.reasons.length) row(dl, "reasons", list(s.reasons));
    row(dl, "cache", s.cache + (s.similarity == null ? "" : ` (similarity ${s.similarity})`));
    row(dl, "fallbacks", s.fallbacks && s.fallbacks.length ? list(s.fallbacks) : "none");
    if (s.skipped && s.skipped.length) row(dl, "skipped", list(s.skipped));
    row(dl, "cascade", s.cascade ? el("pre", { text: JSON.stringify(s.cascade, null, 2) }) : "none");
    row(dl, "cost", money(s.cost_usd));
    row(dl, "saved", money(s.savings_usd));
    row(dl, "routing savings", money(s.routing_savings_usd));
    row(dl, "cache savings", money(s.cache_savings_usd));
    if (s.shadow) row(dl, "shadow", el("pre", { text: JSON.stringify(s.shadow, null, 2) }));
    row(dl, "prompt", r.prompt == null ? el("span", { class: "muted", text: "not logged (log.prompts is off)" })
                                         : el("pre", { class: "prompt", text: r.prompt }));
    box.replaceChildren(el("h2", { text: "Request " + r.id }), dl, el("a", { href: "#", class: "close", text: "close" }));
  }

  // Show request `id` in `box`; errors are shown in the box as text.
  async function show(box, id) {
    box.hidden = false;
    delete box.dataset.id;
    box.replaceChildren(el("div", { class: "muted", text: "loading " + id }));
    try {
      render(box, await SMR.json("/v1/requests/" + encodeURIComponent(id)));
      box.dataset.id = id;
    } catch (e) {
      box.replaceChildren(el("div", { class: "error", text: e.message }));
    }
  }
  return { show, render };
})();
