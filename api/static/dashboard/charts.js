/* Small SVG line charts, drawn by hand (no library): gaps where a value is null, a legend,
   and a readout of the values under the pointer. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 170, L = 56, R = 12, T = 10, B = 22;

  function s(tag, attrs, text) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v * 1.0001) return m * p;
    return 10 * p;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function clock(iso, withDate) {
    const d = new Date(iso);
    const t = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return withDate ? `${d.getMonth() + 1}/${d.getDate()} ${t}` : t;
  }

  /* line({title, times: [iso], series: [{label, color, dash, values: [number|null]}],
           format(v) → text, testid}) → an element holding the chart. */
  function line(opts) {
    const {h} = Dash;
    const n = opts.times.length;
    const all = opts.series.flatMap((x) => x.values.filter((v) => v !== null && v !== undefined));
    const max = niceMax(Math.max(0, ...all));
    const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : i * (W - L - R) / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title});
    for (const f of [0, 0.5, 1]) {
      svg.append(s("line", {x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), class: "gridline"}));
      svg.append(s("text", {x: L - 6, y: y(max * f) + 3, "text-anchor": "end", class: "axis"},
                   opts.format(max * f)));
    }
    if (n) {
      const span = new Date(opts.times[n - 1]) - new Date(opts.times[0]);
      const withDate = span > 20 * 3600 * 1000;
      for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
        svg.append(s("text", {x: x(i), y: H - 6, class: "axis",
                              "text-anchor": i === 0 ? "start" : i === n - 1 ? "end" : "middle"},
                     clock(opts.times[i], withDate)));
      }
    }
    for (const series of opts.series) {
      let d = "";
      let pen = false;
      series.values.forEach((v, i) => {
        if (v === null || v === undefined) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        const alone = !pen && (i === n - 1 || series.values[i + 1] === null ||
                               series.values[i + 1] === undefined);
        if (alone) svg.append(s("circle", {cx: x(i), cy: y(v), r: 2.5, fill: series.color}));
        pen = true;
      });
      if (d) {
        const path = s("path", {d, fill: "none", stroke: series.color, "stroke-width": 1.8,
                                "stroke-dasharray": series.dash || null,
                                "stroke-linejoin": "round"});
        path.append(s("title", {}, series.label));
        svg.append(path);
      }
    }
    const cursor = s("line", {y1: T, y2: H - B, stroke: "#98a2b3", "stroke-dasharray": "3 3",
                              visibility: "hidden"});
    svg.append(cursor);
    const readout = h("span", {class: "muted"});
    svg.addEventListener("mousemove", (event) => {
      if (!n) return;
      const box = svg.getBoundingClientRect();
      const px = (event.clientX - box.left) * W / box.width;
      const i = Math.max(0, Math.min(n - 1, Math.round((px - L) / ((W - L - R) / Math.max(1, n - 1)))));
      cursor.setAttribute("x1", x(i));
      cursor.setAttribute("x2", x(i));
      cursor.setAttribute("visibility", "visible");
      readout.textContent = clock(opts.times[i], false) + " · " + opts.series
        .filter((x) => x.values[i] !== null && x.values[i] !== undefined)
        .map((x) => `${x.label} ${opts.format(x.values[i])}`).join(" · ");
    });
    svg.addEventListener("mouseleave", () => {
      cursor.setAttribute("visibility", "hidden");
      readout.textContent = "";
    });
    const legend = h("div", {class: "legend"});
    for (const series of opts.series.filter((x) => !x.hideInLegend)) {
      const sw = h("span", {class: "sw"});
      sw.style.background = series.color;
      legend.append(h("span", {}, sw, series.legend || series.label));
    }
    if (opts.note) legend.append(h("span", {class: "muted"}, opts.note));
    return h("div", {class: "chart", "data-testid": opts.testid || null},
             h("h3", {}, opts.title, " ", readout), svg, legend);
  }

  return {line};
})();
