/* The alerts page: active alerts by default (or all), newest first. */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  const filters = {model: Dash.param("model"), all: Dash.param("all")};
  let lastJson = "";
  let poller = null;
  const pager = Dash.pager($("alerts-pager"), () => { lastJson = ""; poller.now(); });

  const number = (v) => (v === null || v === undefined ? "—" : String(Math.round(v * 1e4) / 1e4));

  function render(list) {
    const body = clear($("alerts"));
    const none = $("alerts-empty");
    none.hidden = true;
    if (!list.length) {
      Dash.empty(none, filters.all ? "No alerts." : "No active alerts.",
                 filters.all ? "" : "All quiet. Untick “active only” to see resolved ones.");
    }
    for (const a of list) {
      body.append(h("tr", {"data-alert": a.id},
        Dash.timeCell(a.created_at), h("td", {}, Dash.badge(a.severity, "sev-" + a.severity)),
        h("td", {}, Dash.modelLink(a.model)), h("td", {class: "mono"}, a.version || "—"),
        h("td", {}, a.rule), h("td", {}, a.message),
        h("td", {class: "mono"}, `${number(a.value)} / ${number(a.threshold)}`),
        h("td", {}, a.active ? Dash.badge("active", "sev-" + a.severity)
                             : h("span", {class: "muted", title: a.resolved_at || ""},
                                 "resolved " + Dash.time(a.resolved_at)))));
    }
  }

  async function load() {
    const data = await api("GET", "/api/alerts" + query({
      model: filters.model, active: filters.all ? "" : "true", limit: 25,
      page_token: pager.token()}));
    const json = JSON.stringify(data);
    if (json !== lastJson) {
      lastJson = json;
      render(data.alerts);
      pager.render(data.next_page_token);
    }
    return 5000;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("f-model").value = filters.model;
    $("f-active").checked = !filters.all;
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      filters.model = $("f-model").value.trim();
      filters.all = $("f-active").checked ? "" : "1";
      Dash.setParams(filters);
      pager.reset();
      poller.now();
    });
    $("f-active").addEventListener("change", () => $("filters").requestSubmit());
    document.addEventListener("dash:key", () => { lastJson = ""; poller.now(); });
    poller = Dash.poll(load);
  });
})();
