/* Shared helpers of the dashboard pages: building elements, calling the API with the pasted
   key, confirmations, polling, pagination and a few formatters.
   Everything that comes from the API is put into the page as text (textContent), never as
   markup. */
"use strict";

const Dash = (() => {
  const KEY_STORAGE = "modelRegistry.apiKey";
  const PALETTE = ["#2457d6", "#e8710a", "#1a7f4b", "#9334e6", "#c42b1c", "#0b8eaa",
                   "#b0890b", "#5f6b7a"];

  /* h("td", {class: "x", title: t}, "text", childNode, ...): an element; strings become text. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2), value);
      } else {
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function $(id) { return document.getElementById(id); }

  function clear(el) { el.replaceChildren(); return el; }

  /* -- the API ------------------------------------------------------------------------------ */
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
    }
    const s = q.toString();
    return s ? "?" + s : "";
  }

  /* api("GET", "/api/models", null) → the parsed JSON; throws ApiError with the API's message. */
  async function api(method, path, body) {
    const headers = {Accept: "application/json"};
    const key = apiKey();
    if (key) headers.Authorization = "Bearer " + key;
    const init = {method, headers, cache: "no-store"};
    if (body !== undefined && body !== null) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "NETWORK", "the server did not answer (" + err.message + ")");
    }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(response.status, e.code || "HTTP_" + response.status,
                         e.message || response.statusText || "request failed");
    }
    return data;
  }

  /* -- messages ------------------------------------------------------------------------------ */
  function errorText(err) {
    if (!(err instanceof ApiError)) return String(err && err.message || err);
    let text = err.status ? `${err.status} ${err.code}: ${err.message}` : err.message;
    if (err.status === 401) text += " — paste an API key in the header (role read to look, write to act).";
    if (err.status === 403) text += " — this key's role is too low for that.";
    return text;
  }

  function banner(message, kind) {
    const el = $("banner");
    if (!message) { el.hidden = true; el.textContent = ""; return; }
    el.className = "banner" + (kind ? " " + kind : "");
    el.textContent = message;
    el.hidden = false;
  }

  let toastTimer = null;
  function toast(message) {
    const el = $("toast");
    el.textContent = message;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  /* confirmAction({title, text, confirm, danger, run(reason) → Promise<string|void>}): asks
     first; on refusal keeps the dialog open with the API's message. */
  function confirmAction(opts) {
    const dialog = $("confirm");
    $("confirm-title").textContent = opts.title;
    $("confirm-text").textContent = opts.text || "";
    $("confirm-reason").value = "";
    $("confirm-error").hidden = true;
    const ok = $("confirm-ok");
    ok.textContent = opts.confirm || "Confirm";
    ok.className = opts.danger ? "danger" : "primary";
    ok.disabled = false;
    const form = $("confirm-form");
    const cancel = $("confirm-cancel");
    const close = () => { form.onsubmit = null; cancel.onclick = null; dialog.close(); };
    cancel.onclick = close;
    form.onsubmit = async (event) => {
      event.preventDefault();
      ok.disabled = true;
      try {
        const done = await opts.run($("confirm-reason").value.trim());
        close();
        toast(done || "Done.");
      } catch (err) {
        const box = $("confirm-error");
        box.textContent = errorText(err);
        box.hidden = false;
        ok.disabled = false;
      }
    };
    dialog.showModal();
  }

  /* -- polling: run(fn) now and again after the delay fn returns (ms), while visible ------- */
  function poll(fn) {
    let timer = null;
    let running = false;
    let failed = false;
    async function tick() {
      clearTimeout(timer);
      if (running) return;
      running = true;
      let delay = 5000;
      try {
        delay = await fn();
        if (failed) banner("");
        failed = false;
      } catch (err) {
        banner(errorText(err));
        failed = true;
        delay = 5000;
      } finally {
        running = false;
      }
      if (delay) timer = setTimeout(tick, document.hidden ? Math.max(delay, 10000) : delay);
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
    tick();
    return {now: tick};
  }

  /* -- pagination over opaque next_page_token ----------------------------------------------- */
  function pager(el, load) {
    const tokens = [null];
    let index = 0;
    const state = {
      token() { return tokens[index]; },
      reset() { tokens.length = 1; index = 0; },
      render(nextToken) {
        tokens.length = index + 1;
        if (nextToken) tokens.push(nextToken);
        clear(el);
        if (index === 0 && !nextToken) return;
        el.append(
          h("button", {type: "button", disabled: index === 0,
                       onclick: () => { index -= 1; load(); }}, "← Previous"),
          h("span", {class: "muted"}, `page ${index + 1}`),
          h("button", {type: "button", disabled: !nextToken, "data-testid": "next-page",
                       onclick: () => { index += 1; load(); }}, "Next →"));
      },
    };
    return state;
  }

  /* -- formatting ----------------------------------------------------------------------------- */
  const pad = (n) => String(n).padStart(2, "0");

  function time(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
           `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function timeCell(iso) { return h("td", {class: "mono", title: iso || ""}, time(iso)); }

  function bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  function seconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms";
    return s.toFixed(2) + " s";
  }

  function percent(fraction, digits) {
    if (fraction === null || fraction === undefined) return "—";
    return (fraction * 100).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  function badge(text, cls) { return h("span", {class: "badge " + (cls || "")}, text); }
  function stateBadge(state) { return badge(state.replace("_", " "), "s-" + state); }

  function stepText(dep) {
    if (dep.step === null || dep.step === undefined) return "—";
    return `${dep.step + 1} of ${dep.steps.length} (${dep.steps[dep.step]}%)`;
  }

  function modelLink(name) {
    return h("a", {href: "/ui/models/" + encodeURIComponent(name)}, name);
  }

  /* A colour per version, stable within a page: the first version asked for gets the first. */
  function palette() {
    const seen = new Map();
    return (version) => {
      if (!seen.has(version)) seen.set(version, PALETTE[seen.size % PALETTE.length]);
      return seen.get(version);
    };
  }

  /* The traffic split as a horizontal bar; segments carry data-version and data-weight. */
  function trafficBar(weights, colorOf, opts) {
    opts = opts || {};
    const entries = Object.entries(weights || {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const bar = h("div", {class: "bar" + (opts.big ? " big" : ""), role: "img",
                          "aria-label": entries.map(([v, w]) => `${v} ${w}%`).join(", ") || "no traffic"});
    if (!entries.length) {
      bar.classList.add("empty-bar");
      bar.textContent = opts.emptyText || "nothing serving";
      return bar;
    }
    for (const [version, weight] of entries) {
      const seg = h("div", {class: "seg", "data-version": version, "data-weight": weight,
                            title: `${version}: ${weight}%`},
                    weight >= (opts.big ? 8 : 18) ? `${version} ${weight}%` : "");
      seg.style.width = weight + "%";
      seg.style.background = colorOf(version);
      bar.append(seg);
    }
    return bar;
  }

  /* Draw the bar into container; when the same versions are shown already, change their widths
     in place so that the move animates. */
  function renderBar(container, weights, colorOf, opts) {
    const current = container.querySelector(".bar");
    const versions = Object.keys(weights || {}).sort().join("\n");
    const segs = current ? Array.from(current.querySelectorAll(".seg")) : [];
    const shown = segs.map((seg) => seg.dataset.version).sort().join("\n");
    if (!current || !segs.length || versions !== shown) {
      container.replaceChildren(trafficBar(weights, colorOf, opts));
      return;
    }
    const min = opts && opts.big ? 8 : 18;
    for (const seg of segs) {
      const version = seg.dataset.version;
      const weight = weights[version];
      if (String(weight) === seg.dataset.weight) continue;
      seg.dataset.weight = weight;
      seg.title = `${version}: ${weight}%`;
      seg.textContent = weight >= min ? `${version} ${weight}%` : "";
      seg.style.width = weight + "%";
    }
    current.setAttribute("aria-label", Object.entries(weights).map(([v, w]) => `${v} ${w}%`).join(", "));
  }

  function jsonDetails(label, value) {
    if (value === null || value === undefined ||
        (typeof value === "object" && !Object.keys(value).length)) return h("span", {class: "muted"}, "—");
    return h("details", {}, h("summary", {}, label),
             h("pre", {class: "json"}, JSON.stringify(value, null, 2)));
  }

  function empty(el, title, hint, code) {
    clear(el);
    el.append(h("strong", {}, title));
    if (hint) el.append(h("span", {}, hint));
    if (code) el.append(h("br"), h("code", {}, code));
    el.hidden = false;
  }

  /* -- the key field in the header ----------------------------------------------------------- */
  function initKey() {
    const input = $("api-key");
    const state = $("key-state");
    const show = () => {
      const key = apiKey();
      state.textContent = key ? "key set (…" + key.slice(-4) + ")" : "no key";
      input.value = "";
      input.placeholder = key ? "replace the key" : "paste a key (optional)";
    };
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = input.value.trim();
      if (value) localStorage.setItem(KEY_STORAGE, value);
      show();
      banner("");
      document.dispatchEvent(new CustomEvent("dash:key"));
    });
    $("key-clear").addEventListener("click", () => {
      localStorage.removeItem(KEY_STORAGE);
      show();
      document.dispatchEvent(new CustomEvent("dash:key"));
    });
    show();
  }

  document.addEventListener("DOMContentLoaded", initKey);

  /* Read ?name=value of the page's own URL (filters survive a reload or a shared link). */
  function param(name) { return new URLSearchParams(location.search).get(name) || ""; }

  function setParams(params) {
    const url = new URL(location.href);
    for (const [k, v] of Object.entries(params)) {
      if (v) url.searchParams.set(k, v); else url.searchParams.delete(k);
    }
    history.replaceState(null, "", url);
  }

  return {h, append, $, clear, api, query, ApiError, errorText, banner, toast, confirmAction,
          poll, pager, time, timeCell, bytes, seconds, percent, badge, stateBadge, stepText,
          modelLink, palette, trafficBar, renderBar, jsonDetails, empty, param, setParams};
})();
