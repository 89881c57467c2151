// Shared by the dashboard and the playground: the key (session storage only, never in a URL) and API calls.
"use strict";
const SMR = (() => {
  const KEY = "smr.key";
  const getKey = () => sessionStorage.getItem(KEY) || "";
  const setKey = (k) => (k ? sessionStorage.setItem(KEY, k) : sessionStorage.removeItem(KEY));

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + getKey() }, options.headers || {});
    const res = await fetch(path, Object.assign({}, options, { headers }));
    if (!res.ok) {
      let message = res.status + " " + res.statusText;
      try { message = (await res.json()).error.message || message; } catch (e) { /* not JSON */ }
      const err = new Error(message);
      err.status = res.status;
      throw err;
    }
    return res;
  }
  const json = async (path, options) => (await api(path, options)).json();

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }
  const usd = (x) => "$" + (Math.abs(x) >= 1 ? x.toFixed(2) : Math.abs(x) >= 0.01 ? x.toFixed(4) : x.toFixed(6));
  const pct = (x) => (100 * x).toFixed(1) + "%";

  // The sign-in form: a pasted key kept in this tab's session storage.
  function signin(form, onChange) {
    const input = form.querySelector("input");
    const out = form.querySelector("button.secondary");
    input.value = getKey();
    form.addEventListener("submit", (e) => { e.preventDefault(); setKey(input.value.trim()); onChange(); });
    out.addEventListener("click", () => { setKey(""); input.value = ""; onChange(); });
  }
  return { getKey, setKey, api, json, el, usd, pct, signin };
})();
