// The console's backends page (read only): each backend's provider, model, tiers, prices and capabilities
// (GET /v1/backends) with its circuit state, and whether /health reached it.
"use strict";
SMR.backendsPage = (() => {
  const $ = (id) => document.getElementById(id);
  const { el } = SMR;

  function caps(b) {
    const c = b.capabilities;
    const can = ["tools", "vision", "json_mode"].filter((k) => c[k]);
    return `${can.join(", ") || "text only"}; context ${c.context_window.toLocaleString("en")}; ` +
      `max output ${b.max_output_tokens.toLocaleString("en")}`;
  }

  function healthText(b, h) {
    if (!b.configured) return "not configured: " + (b.detail || "");
    if (!h) return "unknown";
    if (h.reachable === false) return "unreachable" + (h.detail ? ": " + h.detail : "");
    return (h.reachable ? "reachable" : "unknown") + (b.simulated ? " (simulated)" : "");
  }

  async function load() {
    const [list, health] = await Promise.all([
      SMR.json("/v1/backends"), fetch("/health").then((r) => r.json()).catch(() => ({ providers: {} }))]);
    const body = $("backend-table").querySelector("tbody");
    body.replaceChildren();
    for (const b of list.data) {
      const h = (health.providers || {})[b.name];
      const circuit = h ? h.circuit : b.circuit;
      body.append(el("tr", { "data-name": b.name },
        el("td", { text: b.name + (b.baseline ? " (baseline)" : "") }), el("td", { text: b.provider }),
        el("td", { text: b.model }), el("td", { text: b.tiers.join(", ") || "by name only" }),
        el("td", { class: "num", text: "$" + b.input_price }), el("td", { class: "num", text: "$" + b.output_price }),
        el("td", { text: caps(b) }),
        el("td", {}, el("span", { class: "circuit circuit-" + circuit, text: circuit })),
        el("td", { class: "health", text: healthText(b, h) })));
    }
    const status = el("p", { class: "muted", id: "health-status", text: "gateway health: " + (health.status || "unknown") });
    const old = $("health-status");
    if (old) old.replaceWith(status); else $("backends").append(status);
  }
  return { init: () => {}, load };
})();
