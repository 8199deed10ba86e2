/* The webhooks page: subscriptions (never their secrets) and the delivery log of the one
   selected, every attempt of a delivery on demand; send a test, redeliver a past delivery. */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  let selected = Dash.param("webhook");
  let lastJson = "";
  let lastLog = "";
  let poller = null;
  const pager = Dash.pager($("webhooks-pager"), () => { lastJson = ""; poller.now(); });
  const logPager = Dash.pager($("deliveries-pager"), () => { lastLog = ""; poller.now(); });
  const path = (id) => `/api/webhooks/${encodeURIComponent(id)}`;

  /* A button that POSTs to `url` and reports the queued delivery. */
  function queueButton(label, action, url, done) {
    return h("button", {type: "button", "data-action": action, onclick: async () => {
      try {
        const d = (await api("POST", url)).delivery;
        Dash.toast(`Delivery ${d.id} queued.`);
        done();
      } catch (err) { Dash.toast(Dash.errorText(err)); }
    }}, label);
  }

  function testButton(w) {
    return queueButton("Send test", "test", path(w.id) + "/test", () => select(w.id));
  }

  function render(list) {
    const body = clear($("webhooks"));
    const none = $("webhooks-empty");
    none.hidden = true;
    if (!list.length) Dash.empty(none, "No webhooks yet.",
                                 "Subscribe a URL with POST /api/webhooks (admin).");
    for (const w of list) {
      body.append(h("tr", {"data-webhook": w.id, class: w.id === selected ? "selected" : ""},
        h("td", {class: "mono"}, h("a", {href: "#", onclick: (e) => {
          e.preventDefault(); select(w.id); }}, w.id)),
        h("td", {}, Dash.badge(w.kind)), h("td", {class: "mono"}, w.url),
        h("td", {class: "mono"}, w.events.join(", ")),
        h("td", {}, w.model ? Dash.modelLink(w.model) : h("em", {}, "every model")),
        h("td", {title: w.disabled_reason}, w.enabled ? Dash.badge("enabled", "s-succeeded")
                                                     : Dash.badge("disabled", "s-failed")),
        h("td", {}, String(w.consecutive_failures)), h("td", {}, testButton(w))));
    }
  }

  function attempts(d) {
    const box = h("details", {}, h("summary", {}, "attempts"));
    box.addEventListener("toggle", async () => {
      if (!box.open || box.dataset.loaded) return;
      box.dataset.loaded = "1";
      const url = `${path(selected)}/deliveries/${encodeURIComponent(d.id)}`;
      const full = (await api("GET", url)).delivery;
      box.append(h("table", {class: "grid"},
        h("tr", {}, h("th", {}, "#"), h("th", {}, "At"), h("th", {}, "Status"),
          h("th", {}, "Latency"), h("th", {}, "Outcome"), h("th", {}, "Response / error")),
        full.attempt_log.map((a) => h("tr", {},
          h("td", {}, String(a.number)), Dash.timeCell(a.at),
          h("td", {}, a.status_code == null ? "—" : String(a.status_code)),
          h("td", {}, `${a.latency_ms.toFixed(1)} ms`), h("td", {}, Dash.badge(a.outcome)),
          h("td", {class: "mono"}, a.error || a.response_excerpt)))),
        Dash.jsonDetails("body", JSON.parse(full.body)));
    });
    return box;
  }

  function redeliverButton(d) {
    return queueButton("Redeliver", "redeliver",
                       `${path(selected)}/deliveries/${encodeURIComponent(d.id)}/redeliver`,
                       () => { lastLog = ""; poller.now(); });
  }

  function renderLog(list) {
    const body = clear($("deliveries"));
    const none = $("deliveries-empty");
    none.hidden = true;
    if (!list.length) Dash.empty(none, "No deliveries yet.");
    for (const d of list) {
      body.append(h("tr", {"data-delivery": d.id},
        Dash.timeCell(d.created_at), h("td", {class: "mono"}, d.event),
        h("td", {class: "mono"}, d.message_id),
        h("td", {}, Dash.stateBadge(d.state)), h("td", {}, String(d.attempts)),
        h("td", {}, d.last_status == null ? "—" : String(d.last_status)),
        h("td", {class: "reason"}, d.last_error), h("td", {}, attempts(d), redeliverButton(d))));
    }
  }

  function select(id) {
    selected = id;
    Dash.setParams({webhook: id});
    logPager.reset();
    lastJson = "";
    lastLog = "";
    poller.now();
  }

  async function load() {
    const data = await api("GET", "/api/webhooks" + query({limit: 25, page_token: pager.token()}));
    const json = JSON.stringify(data) + selected;
    if (json !== lastJson) {
      lastJson = json;
      render(data.webhooks);
      pager.render(data.next_page_token);
    }
    $("log-card").hidden = !selected;
    if (selected) {
      $("log-title").textContent = selected;
      const log = await api("GET", `${path(selected)}/deliveries` +
                                   query({limit: 25, page_token: logPager.token()}));
      const logJson = JSON.stringify(log);
      if (logJson !== lastLog) {
        lastLog = logJson;
        renderLog(log.deliveries);
        logPager.render(log.next_page_token);
      }
    }
    return 5000;
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.addEventListener("dash:key", () => { lastJson = ""; lastLog = ""; poller.now(); });
    poller = Dash.poll(load);
  });
})();
