/* The models page: one row per model from GET /api/overview (one request per page). */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  let q = Dash.param("q");
  let poller = null;
  const pager = Dash.pager($("models-pager"), () => poller.now());

  function rolloutCell(r) {
    if (!r) return h("td", {class: "muted"}, "—");
    return h("td", {"data-testid": "rollout"},
             Dash.stateBadge(r.state), " ",
             h("span", {class: "muted"}, `${r.strategy} of ${r.version}`),
             r.step !== null ? h("div", {class: "muted"}, "step " + Dash.stepText(r)) : null);
  }

  function liveCell(m) {
    if (!m.live_versions.length) return h("td", {class: "muted"}, "none");
    return h("td", {class: "mono"}, m.live_versions.join(", "),
             m.traffic_source === "default"
               ? h("div", {class: "muted", title: "nothing deployed yet: the highest stable version serves"},
                   "default (highest stable)")
               : null);
  }

  function row(m) {
    const colorOf = Dash.palette();
    if (m.stable_version) colorOf(m.stable_version);
    return h("tr", {"data-model": m.name},
      h("td", {}, Dash.modelLink(m.name),
        m.description ? h("div", {class: "muted"}, m.description.slice(0, 120)) : null),
      liveCell(m),
      h("td", {}, Dash.trafficBar(m.traffic, colorOf)),
      rolloutCell(m.rollout),
      h("td", {}, Dash.badge(m.health, "h-" + m.health)),
      h("td", {}, m.active_alerts
        ? h("a", {href: "/ui/alerts" + query({model: m.name})}, String(m.active_alerts))
        : h("span", {class: "muted"}, "0")),
      Dash.timeCell(m.updated_at));
  }

  function render(data) {
    const body = clear($("models"));
    const none = $("models-empty");
    none.hidden = true;
    if (!data.models.length) {
      if (q) {
        Dash.empty(none, `No model matches “${q}”.`, "Try a shorter part of the name.");
      } else if (pager.token()) {
        Dash.empty(none, "No more models.");
      } else {
        Dash.empty(none, "No models registered yet.",
          "Register one with the API, then add versions and deploy them:",
          `curl -X POST ${location.origin}/api/models/register \\\n` +
          `     -H 'Content-Type: application/json' -d '{"name": "my-model"}'`);
      }
    }
    for (const m of data.models) body.append(row(m));
  }

  async function load() {
    const data = await api("GET", "/api/overview" +
                                  query({q, limit: 50, page_token: pager.token()}));
    render(data);
    pager.render(data.next_page_token);
    return data.models.some((m) => m.rollout) ? 1000 : 5000;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const input = $("q");
    input.value = q;
    let timer = null;
    const search = () => {
      q = input.value.trim();
      pager.reset();
      Dash.setParams({q});
      poller.now();
    };
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 250); });
    $("search").addEventListener("submit", (event) => { event.preventDefault(); search(); });
    document.addEventListener("dash:key", () => poller.now());
    poller = Dash.poll(load);
  });
})();
