/* The deployments page's shadow / experiment panel (issue 19): the shadow report (agreement
   with 95% intervals, latency of both sides, dropped mirrors, worst disagreements) or the
   experiment's running results (per-variant metrics, the verdict). Polls every 5 s. */
"use strict";

(() => {
  const {h, $, api, clear} = Dash;
  let timer = null;
  const pct = (x) => (x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%");
  const sec = (x) => (x === null || x === undefined ? "—" : (1000 * x).toFixed(1) + " ms");
  const num = (x) => (x === null || x === undefined ? "—" : Number(x).toPrecision(3));
  const ci = (c) => (c ? `[${pct(c[0])}, ${pct(c[1])}]` : "—");
  const table = (head, rows) => h("table", {class: "grid"},
    h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));

  function shadowView(r) {
    const s = r.shadow;
    const rate = (name, x) => [name, x ? pct(x.rate) : "—", x ? ci(x.ci95) : "—", x ? String(x.n) : "0"];
    return [
      h("p", {}, `Shadow of ${s.model} ${s.version} — ${s.state}, ${s.sample_percent}% sampled, `,
        `${r.mirrored} mirrored, ${r.dropped} dropped`),
      table(["Measure", "Rate", "95% interval", "Pairs"], [
        rate("agreement", r.agreement), rate("arg-max agreement", r.argmax_agreement),
        rate("candidate errors", r.shadow_errors)]),
      table(["Latency", "p50", "p95", "p99"], ["primary", "shadow"].map((k) =>
        [k, sec(r.latency[k].p50), sec(r.latency[k].p95), sec(r.latency[k].p99)])),
      h("h3", {}, "Worst disagreements"),
      r.worst_disagreements.length ? table(["Similarity", "Max |diff|", "Arg-max", "Example"],
        r.worst_disagreements.map((d) => [num(d.similarity), num(d.max_abs_diff),
          d.argmax_agree === null ? "—" : String(d.argmax_agree),
          d.example ? Dash.jsonDetails("example", d.example) : "not stored"]))
        : h("p", {class: "muted"}, "None."),
    ];
  }

  function experimentView(r) {
    const e = r.experiment;
    const v = r.verdict || {comparisons: []};
    return [
      h("p", {}, `Experiment on ${e.model} — ${e.state}${r.running ? " (running)" : ""}, `,
        `primary metric ${e.primary_metric}, alpha ${e.alpha}: `, h("strong", {}, v.summary || "—")),
      table(["Variant", "Weight", "Requests", "Error rate", "Avg latency", "p95"],
        Object.keys(e.variants).map((ver) => {
          const m = (r.metrics || {})[ver] || {};
          return [ver + (ver === e.control ? " (control)" : ""), e.variants[ver] + "%",
                  String(m.requests || 0), pct(m.error_rate), sec(m.avg_latency), sec(m.p95_latency)];
        })),
      table(["Variant", "Outcome", "Test", "Effect", "CI", "p-value"],
        v.comparisons.map((c) => [c.variant, c.outcome, c.test || "—", num(c.effect),
          c.ci ? `[${num(c.ci[0])}, ${num(c.ci[1])}]` : "—", num(c.p_value)])),
    ];
  }

  async function show(id) {
    const out = clear($("trial-report"));
    const enc = encodeURIComponent(id);
    try {
      out.append(...shadowView(await api("GET", `/api/deployments/${enc}/shadow`)));
    } catch (err) {
      try {
        out.append(...experimentView(await api("GET", `/api/deployments/${enc}/experiment`)));
      } catch (err2) {
        out.append(h("p", {class: "error"}, `No shadow or experiment ${id}.`));
      }
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("trial-form");
    if (!form) return;
    const start = (id) => {
      if (timer) clearInterval(timer);
      if (!id) return;
      show(id);
      timer = setInterval(() => show(id), 5000);
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); start($("trial-id").value.trim()); });
    const given = Dash.param("trial");
    if (given) { $("trial-id").value = given; start(given); }
  });
})();
