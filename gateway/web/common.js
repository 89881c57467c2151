// Shared by the dashboard, the playground and the console: the key (session storage only, never in a URL or a
// cookie: every call sends it as a bearer header, so another site cannot make the browser act with it) and
// API calls. Nothing from the API is inserted as HTML: text goes in with textContent only (`el`).
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

  // Signed out, the page shows only the sign-in form: what needs a key (.needs-key) and "Sign out" are hidden.
  function showSignedIn() {
    const on = Boolean(getKey());
    document.body.dataset.signedIn = on ? "1" : "0";
    for (const node of document.querySelectorAll(".needs-key, .signin button.secondary")) node.hidden = !on;
    return on;
  }

  // The sign-in form: a pasted key kept in this tab's session storage.
  function signin(form, onChange) {
    const input = form.querySelector("input");
    const out = form.querySelector("button.secondary");
    input.value = getKey();
    showSignedIn();
    form.addEventListener("submit", (e) => { e.preventDefault(); setKey(input.value.trim()); showSignedIn(); onChange(); });
    out.addEventListener("click", () => { setKey(""); input.value = ""; showSignedIn(); onChange(); });
  }
  const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "");
  return { getKey, setKey, api, json, el, usd, pct, signin, showSignedIn, when };
})();
