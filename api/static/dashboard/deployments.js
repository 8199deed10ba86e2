/* The deployments page: every rollout newest first, its verdicts (with evidence) and events,
   and the actions on the ones in progress. Polls every second while one is active. */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  const ACTIVE = ["pending", "health_check", "progressing", "paused", "running"];
  const TRIALS = ["shadow", "experiment"];   // issue 19: listed too; their report is the panel
  const filters = {model: Dash.param("model"), state: Dash.param("state")};
  const expanded = new Set();
  const details = new Map();   // "id@updated_at" → the detail row, reused while unchanged
  let lastJson = "";
  let poller = null;
  const pager = Dash.pager($("deployments-pager"), () => { lastJson = ""; poller.now(); });

  function verdictTable(dep) {
    if (!dep.verdicts.length) return h("p", {class: "muted"}, "No verdicts yet.");
    return h("table", {class: "grid"},
      h("thead", {}, h("tr", {}, ["At", "Check", "Step", "Result", "Reason", "Evidence"].map((t) => h("th", {}, t)))),
      h("tbody", {}, dep.verdicts.map((v) => h("tr", {},
        Dash.timeCell(v.at), h("td", {}, v.check),
        h("td", {}, v.step === null || v.step === undefined ? "—" : `${v.step + 1} (${dep.steps[v.step]}%)`),
        h("td", {}, Dash.badge(v.result, "r-" + v.result)), h("td", {class: "reason"}, v.reason),
        h("td", {}, Dash.jsonDetails("evidence", v.evidence))))));
  }

  async function detailRow(dep) {
    const key = `${dep.id}@${dep.updated_at}`;
    if (details.has(key)) return details.get(key);
    const full = (await api("GET", "/api/deployments/" + encodeURIComponent(dep.id))).deployment;
    const row = h("tr", {class: "detail", "data-detail": dep.id}, h("td", {colspan: 10},
      h("h3", {}, "Verdicts"), verdictTable(full),
      h("p", {class: "muted"}, "Analysis settings: "), Dash.jsonDetails("settings", full.analysis),
      h("h3", {}, "Events"),
      h("ol", {class: "timeline"}, (full.events || []).map((e) => h("li", {},
        h("span", {class: "mono"}, Dash.time(e.at)), " ", h("strong", {}, e.kind), " ",
        h("span", {class: "muted"}, "by " + e.actor), e.reason ? " — " + e.reason : "",
        Object.keys(e.detail || {}).length ? Dash.jsonDetails("detail", e.detail) : null)))));
    for (const k of details.keys()) if (k.startsWith(dep.id + "@")) details.delete(k);
    details.set(key, row);
    return row;
  }

  function action(dep, act, label, danger) {
    return h("button", {type: "button", class: danger ? "danger" : "", "data-action": act,
                        onclick: () => Dash.confirmAction({
      title: `${label} ${dep.id} (${dep.model} ${dep.version})?`,
      text: act === "abort" ? "Traffic goes 100% back to the stable version at once." : "",
      confirm: label, danger,
      run: async (reason) => {
        const r = await api("POST", `/api/deployments/${encodeURIComponent(dep.id)}/${act}`, {reason});
        lastJson = "";
        poller.now();
        return `${dep.id} is now ${r.deployment.state}.`;
      }})}, label + "…");
  }

  function trialRow(d) {
    const colorOf = Dash.palette();
    const shadow = d.strategy === "shadow";
    return h("tr", {"data-deployment": d.id},
      Dash.timeCell(d.created_at), h("td", {}, Dash.modelLink(d.model)),
      h("td", {class: "mono"}, shadow ? d.version : Object.keys(d.variants).join(" vs ")),
      h("td", {class: "mono"}, "—"), h("td", {}, d.strategy), h("td", {}, Dash.stateBadge(d.state)),
      h("td", {}, shadow ? `${d.sample_percent}% mirrored` : d.primary_metric),
      h("td", {}, shadow ? "serves nobody" : Dash.trafficBar(d.variants, colorOf)),
      h("td", {class: "reason"}, d.reason),
      h("td", {class: "buttons"}, h("a", {href: "?trial=" + encodeURIComponent(d.id)}, "Report")));
  }

  async function render(list) {
    const body = clear($("deployments"));
    const none = $("deployments-empty");
    none.hidden = true;
    if (!list.length) {
      if (filters.model || filters.state) Dash.empty(none, "No deployment matches these filters.");
      else Dash.empty(none, "No deployments yet.",
                      "Deploy a version from its model's page, or with POST /api/models/{name}/deploy.");
    }
    for (const d of list) {
      if (TRIALS.includes(d.strategy)) { body.append(trialRow(d)); continue; }
      const colorOf = Dash.palette();
      if (d.previous_version) colorOf(d.previous_version);
      const open = expanded.has(d.id);
      const buttons = h("td", {class: "buttons"},
        h("button", {type: "button", "aria-expanded": String(open), onclick: () => {
          if (expanded.has(d.id)) expanded.delete(d.id); else expanded.add(d.id);
          lastJson = "";
          poller.now();
        }}, open ? "Hide" : "Details"));
      if (ACTIVE.includes(d.state)) {
        if (["progressing", "paused"].includes(d.state)) buttons.append(action(d, "promote", "Promote"));
        if (d.state === "progressing") buttons.append(action(d, "pause", "Pause"));
        if (d.state === "paused") buttons.append(action(d, "resume", "Resume"));
        buttons.append(action(d, "abort", "Abort", true));
      }
      body.append(h("tr", {"data-deployment": d.id},
        Dash.timeCell(d.created_at), h("td", {}, Dash.modelLink(d.model)),
        h("td", {class: "mono"}, d.version), h("td", {class: "mono"}, d.previous_version || "—"),
        h("td", {}, d.strategy), h("td", {}, Dash.stateBadge(d.state)),
        h("td", {}, Dash.stepText(d)), h("td", {}, Dash.trafficBar(d.traffic, colorOf)),
        h("td", {class: "reason"}, d.reason), buttons));
      if (open) body.append(await detailRow(d));
    }
  }

  async function load() {
    const data = await api("GET", "/api/deployments" +
      query({model: filters.model, state: filters.state, limit: 25, page_token: pager.token()}));
    const json = JSON.stringify(data) + [...expanded].join();
    if (json !== lastJson) {
      lastJson = json;
      await render(data.deployments);
      pager.render(data.next_page_token);
    }
    return data.deployments.some((d) => ACTIVE.includes(d.state)) ? 1000 : 10000;
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("f-model").value = filters.model;
    $("f-state").value = filters.state;
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      filters.model = $("f-model").value.trim();
      filters.state = $("f-state").value;
      Dash.setParams(filters);
      pager.reset();
      lastJson = "";
      poller.now();
    });
    document.addEventListener("dash:key", () => { lastJson = ""; poller.now(); });
    poller = Dash.poll(load);
  });
})();
