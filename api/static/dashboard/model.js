/* The model page: traffic, the current rollout on its state machine, actions, charts,
   versions, alerts and recent deployments of one model.

   Two polling loops: the live one (traffic and the latest deployment) runs every second while
   a rollout is active and every 2 s otherwise; the slow one (charts and alerts) every 2 s
   during a rollout and every 15 s otherwise. Nothing reloads the page. */
"use strict";

(() => {
  const {h, $, api, query, clear} = Dash;
  const name = $("app").dataset.model;
  const base = "/api/models/" + encodeURIComponent(name);
  const colorOf = Dash.palette();
  const ACTIVE = ["pending", "health_check", "progressing", "paused"];
  const MAIN = ["pending", "health_check", "progressing", "succeeded"];
  const EXITS = ["paused", "failed", "aborted", "superseded", "rolled_back"];
  const TONE = {succeeded: "good", failed: "bad", aborted: "bad", rolled_back: "bad",
                paused: "warn"};
  const KIND_STATE = {
    "deployment.created": "pending", "deployment.health_check": "health_check",
    "deployment.step": "progressing", "deployment.resumed": "progressing",
    "deployment.promoted": "progressing", "deployment.succeeded": "succeeded",
    "deployment.paused": "paused", "deployment.failed": "failed",
    "deployment.aborted": "aborted", "deployment.superseded": "superseded",
    "deployment.rolled_back": "rolled_back",
  };
  const view = {traffic: null, versions: [], depKey: null, active: false};
  let live = null;
  let slow = null;
  const versionPager = Dash.pager($("versions-pager"), () => loadVersions());

  /* -- traffic ---------------------------------------------------------------------------- */
  function renderTraffic(t) {
    if (t.stable_version) colorOf(t.stable_version);
    Dash.renderBar($("traffic-bar"), t.weights, colorOf, {
      big: true, emptyText: "nothing serving yet: deploy a version below"});
    const meta = [];
    if (t.revision === 0 && t.stable_version) {
      meta.push(`nothing deployed yet: the highest stable version, ${t.stable_version}, serves by default`);
    } else if (t.revision > 0) {
      meta.push(`stable: ${t.stable_version || "—"}`, `revision ${t.revision}`,
                `changed ${Dash.time(t.updated_at)}`);
      if (t.deployment_id) meta.push(`by ${t.deployment_id}`);
    }
    $("traffic-meta").textContent = meta.join(" · ");
  }

  /* -- the rollout on its state machine ---------------------------------------------------- */
  function visitedStates(dep) {
    const seen = new Set(["pending"]);
    for (const e of dep.events || []) {
      const state = KIND_STATE[e.kind];
      if (state === "progressing" && dep.steps.length === 1) continue;  // direct: one switch
      if (state) seen.add(state);
    }
    if (dep.verdicts.some((v) => v.check === "health")) seen.add("health_check");
    seen.add(dep.state);
    return seen;
  }

  function node(state, dep, seen) {
    let label = state.replace("_", " ");
    if (state === "progressing" && dep.step !== null && dep.steps.length > 1) {
      label += ` · step ${dep.step + 1} of ${dep.steps.length}`;
    }
    let cls = "node";
    if (state === dep.state) cls += " current " + (TONE[state] || "");
    else if (seen.has(state)) cls += " visited";
    return h("span", {class: cls, "data-state": state,
                      "aria-current": state === dep.state ? "step" : null}, label);
  }

  function verdictLine(v) {
    return h("div", {class: "verdict"}, Dash.badge(v.result, "r-" + v.result), " ", v.reason,
             " ", Dash.jsonDetails("evidence", v.evidence));
  }

  function stepsTrack(dep) {
    const track = h("div", {class: "steps", "data-testid": "steps"});
    const health = dep.verdicts.filter((v) => v.check === "health").pop();
    track.append(h("div", {class: "step" + (health && health.result === "pass" ? " done" : "")},
                   h("div", {class: "pct"}, "health check"),
                   health ? verdictLine(health)
                          : h("div", {class: "verdict"}, dep.state === "pending" ? "waiting" : "—")));
    dep.steps.forEach((weight, i) => {
      const done = dep.state === "succeeded" || (dep.step !== null && i < dep.step);
      const current = dep.step === i && ACTIVE.includes(dep.state);
      const verdict = dep.verdicts.filter((v) => v.step === i && v.check !== "health").pop();
      const analysed = dep.analysis && i < dep.steps.length - 1;
      track.append(h("div", {class: "step" + (done ? " done" : "") + (current ? " current" : ""),
                             "data-step": i},
        h("div", {class: "pct"}, `${weight}%`, h("span", {class: "muted"}, ` to ${dep.version}`)),
        verdict ? verdictLine(verdict)
                : h("div", {class: "verdict"},
                    current ? (analysed ? "analysing…" : "switching…")
                            : analysed || dep.strategy === "blue-green" ? "analysis pending" : "final step")));
    });
    return track;
  }

  function analysisText(a) {
    if (!a) return "no analysis (direct)";
    const parts = [`≥ ${a.min_requests} requests and ${a.interval_s} s per step`,
                   `error rate ≤ ${Dash.percent(a.max_error_rate)}`];
    if (a.max_p95_latency) parts.push(`p95 ≤ ${Dash.seconds(a.max_p95_latency)}`);
    if (a.max_p95_ratio) {
      parts.push(`p95 ≤ ${a.max_p95_ratio}× stable (or within ${Dash.seconds(a.p95_tolerance_s)})`);
    }
    parts.push(`pause after ${a.deadline_s} s without enough data`);
    return parts.join(", ");
  }

  function actionButton(dep, action, label, danger) {
    return h("button", {type: "button", class: danger ? "danger" : "", "data-action": action,
                        onclick: () => Dash.confirmAction({
      title: `${label} ${dep.id}?`,
      text: {
        promote: "Skip the current step's analysis and move to the next step now.",
        pause: "Hold the rollout at its current step until it is resumed, promoted or aborted.",
        resume: "Continue the rollout; the current step's window starts again.",
        abort: "Stop the rollout: traffic goes 100% back to the stable version at once.",
      }[action],
      confirm: label, danger,
      run: async (reason) => {
        const r = await api("POST", `/api/deployments/${encodeURIComponent(dep.id)}/${action}`, {reason});
        live.now();
        return `${dep.id} is now ${r.deployment.state}.`;
      }})}, label + "…");
  }

  function renderRollout(dep) {
    const box = clear($("rollout"));
    const actions = clear($("rollout-actions"));
    const events = clear($("rollout-events"));
    $("rollout-events-box").hidden = !dep;
    if (!dep) {
      $("rollout-title").textContent = "";
      Dash.append(box, [h("div", {class: "empty"}, h("strong", {}, "No deployment yet."),
                              "Deploy a version with the form below.")]);
      return;
    }
    const active = ACTIVE.includes(dep.state);
    $("rollout-title").textContent = `${active ? "in progress" : "last"}: ${dep.id}`;
    const seen = visitedStates(dep);
    const arrows = (states) => states.flatMap((s, i) =>
      i ? [h("span", {class: "arrow"}, "→"), node(s, dep, seen)] : [node(s, dep, seen)]);
    box.append(
      h("div", {class: "machine", "data-testid": "state-machine", "data-state": dep.state},
        h("div", {class: "row"}, arrows(MAIN)),
        h("div", {class: "row exits"}, EXITS.map((s) => node(s, dep, seen)))),
      h("div", {class: "facts"},
        h("span", {}, `${dep.strategy} of `, h("strong", {}, dep.version),
          dep.previous_version ? ` from ${dep.previous_version}` : " (first deployment)"),
        h("span", {}, "started " + Dash.time(dep.created_at)),
        dep.finished_at ? h("span", {}, "finished " + Dash.time(dep.finished_at))
                        : h("span", {}, "updated " + Dash.time(dep.updated_at)),
        dep.deadline_at ? h("span", {}, "step deadline " + Dash.time(dep.deadline_at)) : null,
        h("span", {}, "by " + dep.actor)),
      stepsTrack(dep),
      h("p", {class: "muted"}, "Analysis: " + analysisText(dep.analysis)),
      dep.reason ? h("p", {}, h("span", {class: "muted"}, "Latest reason: "), dep.reason) : null);
    if (active) {
      if (["progressing", "paused"].includes(dep.state)) actions.append(actionButton(dep, "promote", "Promote"));
      if (dep.state === "progressing") actions.append(actionButton(dep, "pause", "Pause"));
      if (dep.state === "paused") actions.append(actionButton(dep, "resume", "Resume"));
      actions.append(actionButton(dep, "abort", "Abort", true));
    }
    for (const e of (dep.events || []).slice().reverse()) {
      events.append(h("li", {}, h("span", {class: "mono"}, Dash.time(e.at)), " ",
                      h("strong", {}, e.kind), " ", h("span", {class: "muted"}, `by ${e.actor}`),
                      e.reason ? ` — ${e.reason}` : ""));
    }
  }

  function renderHistory(deployments) {
    const body = clear($("model-deployments"));
    if (!deployments.length) {
      body.append(h("tr", {}, h("td", {colspan: 6, class: "muted"}, "No deployments yet.")));
    }
    for (const d of deployments) {
      body.append(h("tr", {}, Dash.timeCell(d.created_at), h("td", {class: "mono"}, d.version),
                    h("td", {class: "mono"}, d.previous_version || "—"), h("td", {}, d.strategy),
                    h("td", {}, Dash.stateBadge(d.state)), h("td", {class: "reason"}, d.reason)));
    }
  }

  /* -- the live loop ---------------------------------------------------------------------- */
  async function refreshLive() {
    const [traffic, list] = await Promise.all([
      api("GET", base + "/traffic"),
      api("GET", "/api/deployments" + query({model: name, limit: 5}))]);
    const t = traffic.traffic;
    const revisionChanged = !view.traffic || view.traffic.revision !== t.revision;
    view.traffic = t;
    renderTraffic(t);
    if (revisionChanged) renderVersions();
    // shadows and experiments are listed too (issue 19); this page follows rollouts
    const rollouts = list.deployments.filter((d) => !["shadow", "experiment"].includes(d.strategy));
    renderHistory(rollouts);
    const latest = rollouts[0] || null;
    const key = latest ? `${latest.id}@${latest.updated_at}` : "none";
    if (key !== view.depKey) {
      const detail = latest ? (await api("GET", "/api/deployments/" + encodeURIComponent(latest.id))).deployment : null;
      view.depKey = key;
      renderRollout(detail);
    }
    const active = Boolean(latest && ACTIVE.includes(latest.state));
    $("live-indicator").hidden = !active;
    if (active !== view.active) {
      view.active = active;
      if (slow) slow.now();  // a rollout started or ended: charts and alerts now
    }
    return active ? 1000 : 2000;
  }

  /* -- charts and alerts (the slow loop) --------------------------------------------------- */
  function renderCharts(data) {
    const box = clear($("charts"));
    const versions = Object.keys(data.points);
    const hasData = versions.some((v) => data.points[v].some((p) => p.requests > 0));
    if (!hasData) {
      box.append(h("div", {class: "empty"}, h("strong", {}, "No predictions in this window."),
                       "Charts appear as soon as the model serves requests."));
      return;
    }
    versions.forEach((v) => colorOf(v));
    const times = data.points[versions[0]].map((p) => p.start);
    const stepText = data.step >= 60 ? `${data.step / 60} min` : `${data.step} s`;
    const per = (field, label) => versions.map((v) => ({
      label: v + (label ? " " + label : ""), legend: v, color: colorOf(v),
      values: data.points[v].map((p) => p[field])}));
    const count = (v) => String(Math.round(v * 100) / 100);
    const usd = (v) => "$" + (v >= 1 ? v.toFixed(2) : v >= 0.01 ? v.toFixed(4) : v.toPrecision(2));
    box.append(
      Charts.line({title: `Requests per ${stepText}`, times, testid: "chart-requests",
                   series: per("requests"), format: count}),
      Charts.line({title: "Error rate", times, testid: "chart-errors",
                   series: per("error_rate"), format: (v) => Dash.percent(v, v < 0.1 ? 1 : 0)}),
      Charts.line({title: "Latency p50 / p95 / p99", times, testid: "chart-latency",
                   format: Dash.seconds, note: "p50 dotted · p95 solid · p99 dashed",
                   series: versions.flatMap((v) => [
                     {label: v + " p50", legend: v, hideInLegend: true, color: colorOf(v), dash: "2 3",
                      values: data.points[v].map((p) => p.p50_latency)},
                     {label: v + " p95", legend: v, color: colorOf(v),
                      values: data.points[v].map((p) => p.p95_latency)},
                     {label: v + " p99", legend: v, hideInLegend: true, color: colorOf(v), dash: "7 4",
                      values: data.points[v].map((p) => p.p99_latency)}])}),
      Charts.line({title: `Tokens per ${stepText}`, times, testid: "chart-tokens",
                   series: per("total_tokens"), format: count,
                   note: versions.every((v) => data.points[v].every((p) => !p.total_tokens))
                     ? "no token usage reported (ONNX models have none)" : ""}),
      Charts.line({title: "Cost per 1,000 requests (USD)", times, testid: "chart-cost",
                   series: per("cost_per_1k_requests_usd"), format: usd,
                   note: versions.every((v) => data.points[v].every((p) => !p.cost_micro_usd))
                     ? "no priced usage (set prices: PUT /api/models/{name}/prices)" : ""}),
      Charts.line({title: `Spend per ${stepText} (USD)`, times, testid: "chart-spend",
                   series: per("cost_usd"), format: usd}));
  }

  function renderAlerts(alerts) {
    const list = clear($("model-alerts"));
    if (!alerts.length) list.append(h("li", {class: "muted"}, "No active alerts."));
    for (const a of alerts) {
      list.append(h("li", {}, Dash.badge(a.severity, "sev-" + a.severity), " ",
                    h("span", {class: "mono"}, a.version || "model"), " · ", h("strong", {}, a.rule),
                    " — ", a.message, " ", h("span", {class: "muted"}, Dash.time(a.created_at))));
    }
  }

  async function refreshSlow() {
    const [window, step] = $("window").value.split("|");
    const [series, alerts] = await Promise.all([
      api("GET", base + "/metrics/series" + query({window, step})),
      api("GET", "/api/alerts" + query({model: name, active: "true", limit: 20}))]);
    renderCharts(series);
    renderAlerts(alerts.alerts);
    return view.active ? 2000 : 15000;
  }

  /* -- model, versions --------------------------------------------------------------------- */
  /* The model itself; false when it does not exist (the page then says so and stops). */
  async function loadModel() {
    try {
      const m = (await api("GET", base)).model;
      $("model-description").textContent = m.description;
      const tags = clear($("model-tags"));
      for (const [k, v] of Object.entries(m.tags)) tags.append(h("span", {class: "tag"}, `${k}: ${v}`));
    } catch (err) {
      if (err.status === 404) {
        $("model-missing-text").textContent = err.message;
        $("model-missing").hidden = false;
        $("model-body").hidden = true;
        return false;
      }
      Dash.banner(Dash.errorText(err));
    }
    $("model-missing").hidden = true;
    $("model-body").hidden = false;
    return true;
  }

  function renderVersions() {
    const body = clear($("versions"));
    const weights = (view.traffic && view.traffic.weights) || {};
    const stable = view.traffic && view.traffic.stable_version;
    for (const v of view.versions) {
      const weight = weights[v.version];
      body.append(h("tr", {class: weight ? "serving" : "", "data-version": v.version},
        h("td", {class: "mono"}, v.version),
        h("td", {}, weight ? `${weight}%` : h("span", {class: "muted"}, "—"),
          v.version === stable ? " " : null, v.version === stable ? Dash.badge("stable") : null),
        h("td", {}, Dash.badge(v.status, "st-" + v.status)),
        h("td", {}, v.provider),
        h("td", {class: "mono", title: v.artifact ? "sha256 " + v.artifact.digest : ""},
          v.artifact ? `${v.artifact.digest.slice(0, 12)}… · ${Dash.bytes(v.artifact.size)}`
                     : h("span", {class: "muted"}, "none")),
        h("td", {}, v.aliases.length ? v.aliases.map((a) => h("span", {class: "tag"}, a)) : "—"),
        Dash.timeCell(v.created_at)));
    }
  }

  /* -- how to call this model: copy-paste examples for the clients it speaks --------------- */
  function callExamples(provider) {
    const origin = location.origin;
    const host = location.host;
    const curlPredict = `curl -s -X POST ${origin}${base}/predict \\\n` +
      `     -H 'Content-Type: application/json' -d '{"input": ...}'`;
    if (provider === "gemini") {
      return [
        ["OpenAI SDK (python)",
         `from openai import OpenAI\n\nclient = OpenAI(base_url="${origin}/v1", api_key="KEY")\n` +
         `answer = client.chat.completions.create(\n    model="${name}",\n` +
         `    messages=[{"role": "user", "content": "Hello"}])\n` +
         `print(answer.model, answer.choices[0].message.content)`],
        ["google-genai SDK (python)",
         `from google import genai\n\nclient = genai.Client(api_key="KEY",\n` +
         `                      http_options={"base_url": "${origin}/gemini"})\n` +
         `print(client.models.generate_content(model="${name}", contents="Hello").text)`],
        ["curl (OpenAI chat completions)",
         `curl -s ${origin}/v1/chat/completions -H 'Content-Type: application/json' \\\n` +
         `     -d '{"model": "${name}", "messages": [{"role": "user", "content": "Hello"}]}'`],
        ["curl (predict)", curlPredict.replace("...", '"Hello"')],
      ];
    }
    if (provider === "onnx") {
      return [
        ["tritonclient (python, Open Inference Protocol)",
         `import numpy as np\nimport tritonclient.http as triton\n\n` +
         `client = triton.InferenceServerClient("${host}")\n` +
         `print(client.get_model_metadata("${name}"))  # input names, types, shapes\n` +
         `x = triton.InferInput("INPUT", [1, 4], "FP32")\n` +
         `x.set_data_from_numpy(np.zeros((1, 4), dtype=np.float32))\n` +
         `print(client.infer("${name}", [x]).get_response())`],
        ["curl (Open Inference Protocol)",
         `curl -s ${origin}/v2/models/${name}\n` +
         `curl -s -X POST ${origin}/v2/models/${name}/infer -d '{"inputs": [\n` +
         `  {"name": "INPUT", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]}'`],
        ["curl (predict)", curlPredict.replace("...", "[[0, 0, 0, 0]]")],
      ];
    }
    return [["curl (predict)", curlPredict]];
  }

  async function renderCallExamples(versions) {
    const provider = versions.length ? versions[0].provider : null;
    let examples = callExamples(provider);
    // The real input (name, shape, type) from the ONNX graph, once the version has one.
    if (provider === "onnx" && versions[0].artifact) {
      try {
        const input = (await api("GET", "/v2/models/" + encodeURIComponent(name) +
                                 "/versions/" + encodeURIComponent(versions[0].version))).inputs[0];
        const shape = input.shape.map((d) => (d < 0 ? 1 : d));
        const zeros = JSON.stringify(Array(shape.reduce((a, b) => a * b, 1)).fill(0));
        examples = examples.map(([title, code]) => [title, code
          .replaceAll('"INPUT"', JSON.stringify(input.name))
          .replaceAll("[1, 4]", JSON.stringify(shape).replaceAll(",", ", "))
          .replaceAll("(1, 4)", `(${shape.join(", ")})`)
          .replaceAll('"FP32"', JSON.stringify(input.datatype))
          .replaceAll("[0, 0, 0, 0]", zeros.replaceAll(",", ", "))]);
      } catch (err) { /* not loadable yet: keep the placeholders */ }
    }
    const box = clear($("call-examples"));
    for (const [title, code] of examples) {
      box.append(h("h3", {}, title), h("pre", {class: "json", "data-testid": "call-example"}, code));
    }
  }

  async function loadVersions() {
    try {
      const data = await api("GET", base + "/versions" +
                                    query({limit: 25, page_token: versionPager.token()}));
      view.versions = data.versions;
      renderVersions();
      versionPager.render(data.next_page_token);
      const none = $("versions-empty");
      none.hidden = true;
      if (!data.versions.length && !versionPager.token()) {
        Dash.empty(none, "No versions yet.", "Register one, e.g. an ONNX version:",
          `curl -X POST ${location.origin}${base}/versions/register \\\n` +
          `     -H 'Content-Type: application/json' -d '{"version": "1.0.0", "provider": "onnx"}'`);
      }
      renderCallExamples(data.versions);
      const options = clear($("version-options"));
      for (const v of data.versions) options.append(h("option", {value: v.version}));
    } catch (err) {
      Dash.banner(Dash.errorText(err));
    }
  }

  /* -- actions: deploy and roll back ------------------------------------------------------- */
  function parseSteps(text) {
    if (!text.trim()) return null;
    const steps = text.split(/[\s,]+/).filter(Boolean).map(Number);
    if (steps.some((n) => !Number.isInteger(n))) {
      throw new Error("steps must be whole percents separated by commas, e.g. 10,50,100");
    }
    return steps;
  }

  /* The analysis fields that were filled in, as the deploy body's "analysis" (or null). */
  function analysisSettings() {
    const fields = {min_requests: "an-min-requests", interval_s: "an-interval",
                    max_error_rate: "an-max-error", max_p95_latency: "an-max-p95",
                    max_p95_ratio: "an-max-p95-ratio", p95_tolerance_s: "an-p95-tolerance",
                    deadline_s: "an-deadline"};
    const out = {};
    for (const [key, id] of Object.entries(fields)) {
      const text = $(id).value.trim();
      if (text) out[key] = Number(text);
    }
    return Object.keys(out).length ? out : null;
  }

  function initActions() {
    const strategy = $("deploy-strategy");
    const toggleSteps = () => {
      $("deploy-steps-label").hidden = strategy.value !== "canary";
      $("deploy-analysis").hidden = strategy.value === "direct";
    };
    strategy.addEventListener("change", toggleSteps);
    toggleSteps();
    $("deploy-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const version = $("deploy-version").value.trim();
      const how = strategy.value;
      const stepsText = $("deploy-steps").value;
      const force = $("deploy-force").checked;
      Dash.confirmAction({
        title: `Deploy ${version} of ${name}?`,
        text: {
          canary: "Canary: the new version gets a growing share of traffic (10% → 50% → 100% " +
                  "unless you set steps); each step must pass its analysis, a failing one " +
                  "sends all traffic back to the stable version.",
          "blue-green": "Blue-green: the new version is health-checked while the old one " +
                        "serves, then takes 100% at once; a failing post-switch window " +
                        "switches back.",
          direct: "Direct: after its health check the new version takes 100% at once.",
        }[how] + (force ? " Force: supersedes the rollout in progress." : ""),
        confirm: "Deploy",
        run: async (reason) => {
          const body = {version, strategy: how, reason};
          const steps = how === "canary" ? parseSteps(stepsText) : null;
          if (steps) body.steps = steps;
          if (force) body.force = true;
          const analysis = how === "direct" ? null : analysisSettings();
          if (analysis) body.analysis = analysis;
          const r = await api("POST", base + "/deploy", body);
          live.now();
          return `Deployment ${r.deployment.id} of ${r.deployment.version} started.`;
        }});
    });
    $("rollback-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const version = $("rollback-version").value.trim();
      Dash.confirmAction({
        title: `Roll back ${name}?`,
        text: (version ? `Serve ${version} at 100% now` : "Serve the previous live version at 100% now") +
              ", ending any rollout in progress. The rollback is recorded with its evidence.",
        confirm: "Roll back", danger: true,
        run: async (reason) => {
          const body = {reason};
          if (version) body.version = version;
          const r = await api("POST", base + "/rollback", body);
          live.now();
          return `Rolled back from ${r.rollback.from_version} to ${r.rollback.to_version}.`;
        }});
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    initActions();
    $("window").addEventListener("change", () => slow && slow.now());
    document.addEventListener("dash:key", start);
    start();
  });

  async function start() {
    if (!(await loadModel())) return;
    loadVersions();
    if (live) {
      live.now();
      slow.now();
    } else {
      live = Dash.poll(refreshLive);
      slow = Dash.poll(refreshSlow);
    }
  }
})();
