/* The snapshots page: recorded serving states (by hand or before each deployment); take one,
   or restore one. */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  const filters = {model: Dash.param("model"), automatic: Dash.param("automatic")};
  let lastJson = "";
  let poller = null;
  const pager = Dash.pager($("snapshots-pager"), () => { lastJson = ""; poller.now(); });

  function summary(sum) {
    const models = Object.entries((sum && sum.models) || {});
    const count = (sum && sum.model_count) || models.length;
    if (!models.length) return h("span", {class: "muted"}, "no models");
    const shown = models.map(([name, weights]) => {
      const text = weights ? Object.entries(weights)
        .map(([v, w]) => `${v} ${w}%`).join(", ") : "not deployed";
      return h("div", {}, h("strong", {}, name), ": ", text);
    });
    if (count > models.length) shown.push(h("div", {class: "muted"}, `and ${count - models.length} more`));
    return h("div", {}, shown);
  }

  /* The full recorded state is fetched when opened (lists carry summaries only). */
  function stateDetails(s) {
    const pre = h("pre", {class: "json"}, "loading…");
    const details = h("details", {}, h("summary", {}, "recorded state"), pre);
    details.addEventListener("toggle", async () => {
      if (!details.open || pre.dataset.loaded) return;
      const snap = (await api("GET", `/api/snapshots/${encodeURIComponent(s.id)}`)).snapshot;
      pre.textContent = JSON.stringify(snap.state, null, 2);
      pre.dataset.loaded = "1";
    });
    return details;
  }

  function restoreButton(s) {
    return h("button", {type: "button", class: "danger", "data-action": "restore",
                        onclick: () => Dash.confirmAction({
      title: `Restore snapshot ${s.id}?`,
      text: `Put back the serving state of ${s.model || "every model"} as recorded at ` +
            `${Dash.time(s.created_at)}: traffic, aliases and version statuses, atomically. ` +
            "Each model whose traffic changes gets a rollback record.",
      confirm: "Restore", danger: true,
      run: async (reason) => {
        const r = (await api("POST", `/api/snapshots/${encodeURIComponent(s.id)}/restore`, {reason})).restore;
        lastJson = "";
        poller.now();
        return `Restored ${r.restored.length} model(s)` +
               (r.untouched.length ? `, ${r.untouched.length} already as recorded.` : ".");
      }})}, "Restore…");
  }

  function render(list) {
    const body = clear($("snapshots"));
    const none = $("snapshots-empty");
    none.hidden = true;
    if (!list.length) {
      if (filters.model || filters.automatic) Dash.empty(none, "No snapshot matches these filters.");
      else Dash.empty(none, "No snapshots yet.",
                      "One is taken automatically before every deployment; take one by hand above.");
    }
    for (const s of list) {
      body.append(h("tr", {"data-snapshot": s.id},
        Dash.timeCell(s.created_at),
        h("td", {}, s.model ? Dash.modelLink(s.model) : h("em", {}, "every model")),
        h("td", {}, s.automatic ? Dash.badge("automatic") : Dash.badge("manual", "st-beta")),
        h("td", {class: "reason"}, s.reason), h("td", {}, s.actor),
        h("td", {}, summary(s.summary), stateDetails(s)),
        h("td", {}, restoreButton(s))));
    }
  }

  async function load() {
    const data = await api("GET", "/api/snapshots" + query({
      model: filters.model, automatic: filters.automatic, limit: 25, page_token: pager.token()}));
    const json = JSON.stringify(data);
    if (json !== lastJson) {
      lastJson = json;
      render(data.snapshots);
      pager.render(data.next_page_token);
    }
    return 10000;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("f-model").value = filters.model;
    $("f-automatic").value = filters.automatic;
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      filters.model = $("f-model").value.trim();
      filters.automatic = $("f-automatic").value;
      Dash.setParams(filters);
      pager.reset();
      poller.now();
    });
    $("snapshot-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const model = $("snap-model").value.trim();
      Dash.confirmAction({
        title: model ? `Snapshot the serving state of ${model}?` : "Snapshot every model?",
        text: "Records traffic tables, aliases, version statuses and the rollout in progress.",
        confirm: "Take snapshot",
        run: async (reason) => {
          const body = {reason};
          if (model) body.model = model;
          const s = (await api("POST", "/api/snapshots", body)).snapshot;
          lastJson = "";
          poller.now();
          return `Snapshot ${s.id} taken.`;
        }});
    });
    document.addEventListener("dash:key", () => { lastJson = ""; poller.now(); });
    poller = Dash.poll(load);
  });
})();
