// The playground: a chat that streams from /v1/chat/completions (SSE) and shows why each answer came from
// where it did (the `smr` object of the first and the usage chunk).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let history = [];

  async function loadModels() {
    const select = $("model");
    if (!SMR.getKey()) { $("who").textContent = "not signed in"; return; }
    try {
      const models = await SMR.json("/v1/models");
      const chat = models.data.filter((m) => !m.endpoints || m.endpoints.includes("/v1/chat/completions"));
      select.replaceChildren(...chat.map((m) => SMR.el("option", { value: m.id, text: m.id })));
      select.value = "auto";
      $("who").textContent = "signed in";
    } catch (e) { showError(e); }
  }

  function showError(e) { $("error").textContent = e.message; $("error").hidden = false; }

  function meta(smr, usage) {
    const parts = [];
    if (smr.tier) parts.push("tier " + smr.tier);
    if (smr.model) parts.push("model " + smr.model);
    if (smr.classifier) parts.push("classifier " + smr.classifier);
    if (smr.score != null) parts.push("score " + smr.score.toFixed(3));
    if (smr.cost_usd != null) parts.push("cost " + SMR.usd(smr.cost_usd));
    if (smr.savings_usd != null) parts.push("saved " + SMR.usd(smr.savings_usd));
    parts.push("cache " + smr.cache);
    if (smr.cascade) parts.push(`escalated from ${smr.cascade.from_tier} (${smr.cascade.reason})`);
    if (usage) parts.push(`${usage.prompt_tokens} + ${usage.completion_tokens} tokens`);
    return parts.join(" · ");
  }

  async function send(text) {
    $("error").hidden = true;
    history.push({ role: "user", content: text });
    $("chat").append(SMR.el("div", { class: "msg user", text }));
    const body = SMR.el("span", { class: "text" });
    const info = SMR.el("div", { class: "meta", text: "routing ..." });
    const answer = SMR.el("div", { class: "msg assistant" }, body, info);
    $("chat").append(answer);
    $("send").disabled = true;
    let smr = {}, usage = null, content = "";
    try {
      const res = await SMR.api("/v1/chat/completions", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: $("model").value, stream: true, stream_options: { include_usage: true },
                               messages: history }) });
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          const data = event.replace(/^data: /, "");
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.smr) { smr = Object.assign(smr, chunk.smr); info.textContent = meta(smr, usage); }
          if (chunk.usage) { usage = chunk.usage; info.textContent = meta(smr, usage); }
          for (const c of chunk.choices || []) {
            if (c.delta && c.delta.content) { content += c.delta.content; body.textContent = content; }
          }
        }
      }
      answer.dataset.done = "1";
      history.push({ role: "assistant", content });
    } catch (e) {
      info.textContent = "failed"; showError(e);
      history.pop();
    } finally { $("send").disabled = false; }
  }

  document.addEventListener("DOMContentLoaded", () => {
    SMR.signin($("signin"), loadModels);
    $("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("prompt").value.trim();
      if (text) { $("prompt").value = ""; send(text); }
    });
    $("prompt").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
    });
    $("clear").addEventListener("click", () => { history = []; $("chat").replaceChildren(); });
    loadModels();
  });
})();
