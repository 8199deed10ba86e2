/* The rollbacks page: the history of every rollback (manual, automatic, snapshot) with the
   evidence it was decided on. */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  const filters = {model: Dash.param("model")};
  let lastJson = "";
  let poller = null;
  const pager = Dash.pager($("rollbacks-pager"), () => { lastJson = ""; poller.now(); });

  function render(list) {
    const body = clear($("rollbacks"));
    const none = $("rollbacks-empty");
    none.hidden = true;
    if (!list.length) {
      if (filters.model) Dash.empty(none, `No rollbacks of “${filters.model}”.`);
      else Dash.empty(none, "No rollbacks yet.",
                      "Manual rollbacks, aborted canaries and snapshot restores are recorded here.");
    }
    for (const r of list) {
      body.append(h("tr", {"data-rollback": r.id},
        Dash.timeCell(r.created_at), h("td", {}, Dash.modelLink(r.model)),
        h("td", {class: "mono"}, `${r.from_version || "—"} → ${r.to_version || "—"}`),
        h("td", {}, Dash.badge(r.trigger, "t-" + r.trigger)),
        h("td", {class: "reason"}, r.reason), h("td", {}, r.actor || "—"),
        h("td", {class: "mono"}, r.deployment_id || "—"),
        h("td", {}, Dash.jsonDetails("evidence", r.evidence))));
    }
  }

  async function load() {
    const data = await api("GET", "/api/rollbacks" +
      query({model: filters.model, limit: 25, page_token: pager.token()}));
    const json = JSON.stringify(data);
    if (json !== lastJson) {
      lastJson = json;
      render(data.rollbacks);
      pager.render(data.next_page_token);
    }
    return 10000;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("f-model").value = filters.model;
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      filters.model = $("f-model").value.trim();
      Dash.setParams(filters);
      pager.reset();
      poller.now();
    });
    document.addEventListener("dash:key", () => { lastJson = ""; poller.now(); });
    poller = Dash.poll(load);
  });
})();
