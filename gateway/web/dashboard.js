// The dashboard: reads /v1/usage and /v1/requests with the signed-in key and draws them (plain SVG built
// element by element; API text goes in as textContent only). A request's id opens its detail
// (#request=<id>, detail.js). The learning panels read /v1/usage?view=learning (docs/learning.md).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = { cost: "#c8553d", baseline_cost: "#8a93a6", savings: "#2a9d8f" };

  function query(extra) {
    const p = new URLSearchParams(extra);
    const hours = Number($("range").value);
    if (hours) p.set("from", new Date(Date.now() - hours * 3600e3).toISOString());
    if ($("tenant").value.trim()) p.set("tenant", $("tenant").value.trim());
    if ($("key").value.trim()) p.set("key", $("key").value.trim());
    return p.toString();
  }

  function card(label, value) {
    return SMR.el("div", { class: "card" }, SMR.el("div", { class: "label", text: label }),
                  SMR.el("div", { class: "value", text: value }));
  }

  function drawTimeline(svg, groups) {
    svg.replaceChildren();
    const W = 600, H = 200, P = 28, L = 70;  // L: room for the axis label
    const series = ["baseline_cost", "cost", "savings"];
    const values = groups.map((g) => ({ baseline_cost: g.baseline_cost_usd, cost: g.cost_usd, savings: g.savings_usd }));
    const max = Math.max(1e-12, ...values.flatMap((v) => series.map((s) => v[s])));
    const x = (i) => L + (groups.length > 1 ? (i * (W - L - P)) / (groups.length - 1) : (W - L - P) / 2);
    const y = (v) => H - P - (Math.max(0, v) / max) * (H - 2 * P);
    const axis = document.createElementNS(SVG, "path");
    axis.setAttribute("d", `M${L} ${P} V${H - P} H${W - P}`);
    axis.setAttribute("stroke", "#c4c9d4"); axis.setAttribute("fill", "none");
    svg.append(axis);
    const label = (text, lx, ly, anchor) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", lx); t.setAttribute("y", ly); t.setAttribute("font-size", "10");
      t.setAttribute("fill", "#5c6577"); t.setAttribute("text-anchor", anchor); t.textContent = text;
      svg.append(t);
    };
    label(SMR.usd(max), L - 4, P + 3, "end");
    label("$0", L - 4, H - P + 3, "end");
    // One bucket (e.g. the last hour): one label under its dots, not the same one at both ends of the axis.
    if (groups.length === 1) label(groups[0].group, x(0), H - 8, "middle");
    else if (groups.length) { label(groups[0].group, L, H - 8, "start"); label(groups[groups.length - 1].group, W - P, H - 8, "end"); }
    for (const s of series) {
      const line = document.createElementNS(SVG, "polyline");
      line.setAttribute("points", values.map((v, i) => `${x(i).toFixed(1)},${y(v[s]).toFixed(1)}`).join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", COLORS[s]); line.setAttribute("stroke-width", "2");
      line.setAttribute("data-series", s);
      svg.append(line);
      values.forEach((v, i) => {
        const dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("cx", x(i).toFixed(1)); dot.setAttribute("cy", y(v[s]).toFixed(1)); dot.setAttribute("r", "2.5");
        dot.setAttribute("fill", COLORS[s]);
        const title = document.createElementNS(SVG, "title");
        title.textContent = `${groups[i].group} ${s}: ${SMR.usd(v[s])}`;
        dot.append(title); svg.append(dot);
      });
    }
  }

  function drawShares(box, groups) {
    box.replaceChildren();
    const requests = groups.reduce((a, g) => a + g.requests, 0) || 1;
    const spend = groups.reduce((a, g) => a + g.cost_usd, 0) || 1;
    for (const g of groups) {
      const share = SMR.el("div", { class: "fill share" });
      share.style.width = (100 * g.requests / requests).toFixed(1) + "%";
      const cost = SMR.el("div", { class: "fill spend" });
      cost.style.width = (100 * g.cost_usd / spend).toFixed(1) + "%";
      box.append(SMR.el("div", { class: "bar", "data-group": g.group },
        SMR.el("span", { class: "name", text: g.group, title: g.group }),
        SMR.el("span", { class: "track" }, share, cost),
        SMR.el("span", { text: `${SMR.pct(g.requests / requests)} / ${SMR.pct(g.cost_usd / spend)}` })));
    }
    if (!groups.length) box.append(SMR.el("div", { class: "muted", text: "no requests in this range" }));
  }

  function drawRecent(tbody, rows) {
    tbody.replaceChildren();
    for (const r of rows) {
      // A request refused or failed before routing has no tier or model: say so, not "none" / "(none)".
      const tier = r.tier || (r.status >= 400 ? "error" : "direct");
      const link = SMR.el("a", { href: "#request=" + encodeURIComponent(r.id), text: r.id });
      tbody.append(SMR.el("tr", { "data-id": r.id },
        SMR.el("td", { text: SMR.when(r.created) }),
        SMR.el("td", { text: r.tenant || "" }),
        SMR.el("td", {}, SMR.el("span", { class: "tier tier-" + tier, text: tier })),
        SMR.el("td", { class: "num", text: r.score == null ? "" : r.score.toFixed(3) }),
        SMR.el("td", { text: r.classifier || "" }),
        SMR.el("td", { text: r.model || "-" }),
        SMR.el("td", { class: "num", text: SMR.usd(r.cost_usd) }),
        SMR.el("td", { class: "num", text: SMR.usd(r.savings_usd) }),
        SMR.el("td", { text: r.cache }),
        SMR.el("td", { class: "num", text: Math.round(r.latency_ms) + " ms" }),
        SMR.el("td", { class: "num", text: String(r.status) }),
        SMR.el("td", { class: "id" }, link)));
    }
  }

  // Learning (GET /v1/usage?view=learning's `learning` object, docs/learning.md): four panels, or a line
  // saying why there is nothing to show. Shown or hidden here only, once the figures are in (not with the
  // .needs-key parts at each load's start: the page below it would jump under the pointer).
  function figures(box, rows) {
    const dl = SMR.el("dl", { class: "figures" });
    for (const [label, value, id] of rows) {
      dl.append(SMR.el("dt", { text: label }), SMR.el("dd", id ? { id, text: value } : { text: value }));
    }
    box.append(dl);
  }

  function drawLearning(L) {
    const empty = !L || (L.judged === 0 && L.cache.checks + L.cache.unsure + L.cache.near_misses === 0);
    $("learning").hidden = empty;
    $("learning-empty").hidden = !empty;
    if (empty) {
      $("learning-empty").textContent = !L || !L.on ? "learning is off (learning.sample_rate = 0)"
        : `nothing judged in this range yet (learning.sample_rate = ${L.sample_rate})`;
      return;
    }
    const judged = $("judged");
    judged.replaceChildren(SMR.el("div", { class: "figure-big", id: "judged-share", text: SMR.pct(L.judged_share) }));
    figures(judged, [["judged", String(L.judged), "judged-count"], ["auto requests", String(L.auto_requests), "auto-count"],
      ["served answer better", String(L.verdicts.served || 0)], ["reference better", String(L.verdicts.reference || 0)],
      ["tie", String(L.verdicts.tie || 0)],
      ["sample rate", L.on ? String(L.sample_rate) : "0 (off now: earlier judgements)"]]);
    drawCurve($("curve"), $("curve-notes"), L.pairs);
    drawCacheChecks($("cache-wrong"), L.cache);
    const spend = $("learning-spend");
    spend.replaceChildren(SMR.el("div", { class: "figure-big", id: "learning-cost", text: SMR.usd(L.learning_cost_usd) }));
    figures(spend, [["learning calls", String(L.learning_calls)], ["serving spend", SMR.usd(L.serving_cost_usd), "serving-cost"],
      ["learning / serving", SMR.pct(L.learning_share_of_spend), "learning-share"]]);
  }

  function drawCacheChecks(box, c) {
    box.replaceChildren(SMR.el("div", { class: "figure-big", id: "cache-rate",
      text: c.wrong_hit_rate == null ? "no checked hits" : SMR.pct(c.wrong_hit_rate) }));
    if (c.wrong_hit_rate != null) {
      const verdict = c.wrong_hit_rate_upper < c.bound ? "under the bound (95% upper bound below it)"
        : c.wrong_hit_rate > c.bound ? "over the bound" : "not yet proven under the bound (too few checks)";
      box.append(SMR.el("div", { class: "muted", id: "cache-verdict", text: verdict }));
    }
    const rule = c.threshold == null ? "no semantic cache"
      : `${c.threshold.toFixed(3)} (${c.source}; from ${c.rule_checks} checks, ${c.rule_rests_on} at or above it)`;
    figures(box, [["checked hits", `${c.checks} (${c.wrong} wrong, ${c.unsure} unsure)`, "cache-checks"],
      ["95% upper bound", c.wrong_hit_rate_upper == null ? "-" : SMR.pct(c.wrong_hit_rate_upper), "cache-upper"],
      ["bound (cache.max_wrong_hit_rate)", SMR.pct(c.bound), "cache-bound"],
      ["near misses checked", String(c.near_misses)], ["similarity needed now", rule, "cache-threshold"]]);
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    return node;
  }

  // x: share of the pair's calls left on the cheaper tier (100 % at the left: all cheap); y: share of the
  // reference's quality kept. One line per tier pair, today's operating point as a dot on it.
  function drawCurve(box, notes, pairs) {
    box.replaceChildren(); notes.replaceChildren();
    const W = 320, H = 220, P = 16, L = 40, B = 30;
    const low = Math.min(0.5, ...pairs.flatMap((p) => p.points.map((q) => Math.floor(q.quality * 10) / 10)));
    const x = (cheap) => L + (1 - cheap) * (W - L - P);
    const y = (q) => H - B - ((q - low) / (1 - low || 1)) * (H - B - P);
    box.append(svg("path", { d: `M${L} ${P} V${H - B} H${W - P}`, stroke: "#c4c9d4", fill: "none" }));
    const label = (text, lx, ly, anchor) => box.append(svg("text", { x: lx, y: ly, "font-size": "10", fill: "#5c6577",
      "text-anchor": anchor }, text));
    label("100%", L - 4, y(1) + 3, "end"); label(SMR.pct(low).replace(".0%", "%"), L - 4, H - B + 3, "end");
    label("100% cheap", L, H - B + 12, "start"); label("0% cheap", W - P, H - B + 12, "end");
    label("calls on the cheaper tier", (L + W - P) / 2, H - 4, "middle");
    const colors = ["#8a93a6", "#2457c5", "#7b6cd9"];
    pairs.forEach((p, i) => {
      box.append(svg("polyline", { points: p.points.map((q) => `${x(q.cheap_share).toFixed(1)},${y(q.quality).toFixed(1)}`).join(" "),
        fill: "none", stroke: colors[i % colors.length], "stroke-width": "2", "data-pair": p.pair }));
      const cheap = 1 - p.reference_share_at_cutoff;
      const dot = svg("circle", { cx: x(cheap).toFixed(1), cy: y(p.quality_at_cutoff).toFixed(1), r: "4.5", fill: "#c8553d",
        class: "operating-point", "data-pair": p.pair, "data-quality": String(p.quality_at_cutoff),
        "data-cheap-share": String(cheap) });
      dot.append(svg("title", {}, `${p.pair} today (cut-off ${p.cutoff}): ${SMR.pct(p.quality_at_cutoff)} of the ` +
        `reference's quality with ${SMR.pct(cheap)} of calls on the cheaper tier`));
      box.append(dot);
      const [tier, reference] = p.pair.split("->");
      notes.append(SMR.el("div", { class: "pair-note", "data-pair": p.pair, text:
        `${p.pair}: ${p.judged} judged, APGR ${p.apgr.toFixed(3)}; today (cut-off ${p.cutoff}): ` +
        `${SMR.pct(p.quality_at_cutoff)} of ${reference}'s quality with ${SMR.pct(cheap)} of calls on ${tier}` }));
    });
    if (!pairs.length) notes.append(SMR.el("div", { text: "no judgement with a router score in this range" }));
  }

  async function load() {
    const error = $("error");
    error.hidden = true;
    if (!SMR.showSignedIn()) {
      $("who").textContent = "not signed in";
      $("cards").replaceChildren(); $("detail").hidden = true; $("learning-empty").hidden = true;
      $("learning").hidden = true; return;
    }
    try {
      const hours = Number($("range").value);
      const bucket = hours && hours <= 48 ? "hour" : "day";
      const [total, time, tiers, models, recent, learning] = await Promise.all([
        SMR.json("/v1/usage?" + query({ group_by: "all" })),
        SMR.json("/v1/usage?" + query({ group_by: bucket })), SMR.json("/v1/usage?" + query({ group_by: "tier" })),
        SMR.json("/v1/usage?" + query({ group_by: "model" })), SMR.json("/v1/requests?" + query({ limit: "50" })),
        SMR.json("/v1/usage?" + query({ group_by: "all", view: "learning" }))]);
      $("who").textContent = time.tenant ? "tenant: " + time.tenant : "admin: all tenants";
      const t = total.data[0] || { requests: 0, cost_usd: 0, baseline_cost_usd: 0, savings_usd: 0,
        routing_savings_usd: 0, cache_savings_usd: 0, cache_hit_rate: 0, p50_latency_ms: 0, p95_latency_ms: 0,
        errors: 0, fallbacks: 0 };
      $("cards").replaceChildren(
        card("requests", String(t.requests)), card("spend", SMR.usd(t.cost_usd)),
        card("baseline spend", SMR.usd(t.baseline_cost_usd)), card("savings", SMR.usd(t.savings_usd)),
        card("routing savings", SMR.usd(t.routing_savings_usd)), card("cache savings", SMR.usd(t.cache_savings_usd)),
        card("cache-hit rate", SMR.pct(t.cache_hit_rate)),
        card("latency p50 / p95", `${Math.round(t.p50_latency_ms)} / ${Math.round(t.p95_latency_ms)} ms`),
        card("errors", String(t.errors)), card("fallbacks", String(t.fallbacks)));
      $("cards").dataset.requests = String(t.requests);
      drawTimeline($("timeline"), time.data);
      drawShares($("tiers"), tiers.data);
      drawShares($("models"), models.data);
      drawRecent($("recent").querySelector("tbody"), recent.data);
      drawLearning(learning.learning);
      showDetail();
      document.body.dataset.loaded = String(Date.now());
    } catch (e) {
      error.textContent = e.message; error.hidden = false;
      if (e.status === 401) $("who").textContent = "key refused";
    }
  }

  function showDetail() {
    const m = /^#request=(.+)$/.exec(location.hash);
    if (!m || !SMR.getKey()) { $("detail").hidden = true; return; }
    const id = decodeURIComponent(m[1]);
    if (!$("detail").hidden && $("detail").dataset.id === id) return;  // shown already (a refresh)
    SMR.requestDetail.show($("detail"), id);
    $("detail").scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("DOMContentLoaded", () => {
    window.addEventListener("hashchange", showDetail);
    SMR.signin($("signin"), load);
    for (const id of ["range", "refresh"]) $(id).addEventListener(id === "range" ? "change" : "click", load);
    for (const id of ["tenant", "key"]) $(id).addEventListener("change", load);
    load();
  });
})();
