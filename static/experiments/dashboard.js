// Draws the experiment page's charts from the results JSON embedded in the page (the API's JSON).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("results-data").textContent);
  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  const keys = data.variants.map((v) => v.key);
  const colour = (key) => palette[keys.indexOf(key) % palette.length];
  const name = (key) => { const v = data.variants.find((x) => x.key === key); return v ? `${v.name} (${key})` : key; };
  const rgba = (hex, a) => {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${a})`;
  };
  // A young experiment (< 3 days) has its series per hour too: the time charts draw those, so day one is a line.
  const hourly = Boolean(data.hourly_series && Object.keys(data.hourly_series).length);
  const series = hourly ? data.hourly_series : data.series;
  const liftSeries = hourly ? data.hourly_lift_series : data.lift_series;
  const at = (s) => (hourly ? s.hour : s.day);
  const timeAxis = hourly ? { type: "date", tickformat: "%b %d %H:%M" }
    : { type: "date", tickformat: "%b %d", dtick: 86400000 };
  const layout = (extra) => Object.assign({
    margin: { l: 60, r: 16, t: 10, b: 40 }, legend: { orientation: "h", y: -0.18 }, hovermode: "x unified",
    font: { size: 12 },
    // Series are daily: whole-day ticks, even when only one day exists yet (plotly would zoom to milliseconds).
    xaxis: timeAxis,
  }, extra);
  const config = { displaylogo: false, responsive: true };
  const band = (x, lower, upper, fill, label, group) => [
    { x: x, y: upper, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: group },
    { x: x, y: lower, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: fill, name: label,
      hoverinfo: "skip", legendgroup: group },
  ];
  const pct = { tickformat: ".1%" };

  // 1. Cumulative CTR per arm with its 95% CI band.
  const ctrTraces = [];
  Object.entries(series).forEach(([key, s]) => {
    ctrTraces.push(...band(at(s), s.ctr_lower, s.ctr_upper, rgba(colour(key), 0.18), `${key} 95% CI`, key));
    ctrTraces.push({ x: at(s), y: s.ctr, mode: "lines+markers", name: name(key), line: { color: colour(key) },
                     legendgroup: key });
  });
  Plotly.newPlot("chart-ctr", ctrTraces, layout({ yaxis: Object.assign({ title: "CTR" }, { tickformat: ".2%" }) }), config);

  // 2. Lift and its intervals over time; 3. p-values over time; 4. MDE over time.
  const liftTraces = [], pTraces = [], mdeTraces = [];
  let days = [];
  Object.entries(liftSeries).forEach(([key, s]) => {
    days = at(s);
    liftTraces.push(...band(at(s), s.cs_lower, s.cs_upper, rgba(colour(key), 0.12), `${key} always-valid CS`, key + "cs"));
    liftTraces.push(...band(at(s), s.ci_lower, s.ci_upper, rgba(colour(key), 0.28), `${key} 95% CI`, key + "ci"));
    liftTraces.push({ x: at(s), y: s.lift, mode: "lines+markers", name: `lift ${name(key)}`, line: { color: colour(key) } });
    pTraces.push({ x: at(s), y: s.always_valid_p, mode: "lines+markers", name: `always-valid p ${key}`,
                   line: { color: colour(key) } });
    pTraces.push({ x: at(s), y: s.p_value, mode: "lines", name: `fixed-horizon p ${key}`,
                   line: { color: colour(key), dash: "dot" } });
    mdeTraces.push({ x: at(s), y: s.mde_sequential, mode: "lines+markers", name: `always-valid MDE ${key}`,
                     line: { color: colour(key) } });
    mdeTraces.push({ x: at(s), y: s.mde, mode: "lines", name: `fixed-horizon MDE ${key}`,
                     line: { color: colour(key), dash: "dot" } });
  });
  const hline = (y, label) => ({ x: [days[0], days[days.length - 1]], y: [y, y], mode: "lines", name: label,
                                 line: { color: "#555", dash: "dash", width: 1 } });
  if (days.length) { liftTraces.push(hline(0, "no effect")); }
  Plotly.newPlot("chart-lift", liftTraces, layout({ yaxis: Object.assign({ title: "relative lift" }, pct) }), config);
  if (days.length) { pTraces.push(hline(data.config.alpha, `alpha = ${data.config.alpha}`)); }
  // The log axis reaches down to the smallest p shown (a decade below it), floored at 1e-16: p < 1e-4 stays visible.
  const shown = pTraces.flatMap((t) => t.y || []).filter((p) => typeof p === "number" && p > 0);
  const lowest = Math.max(-16, Math.floor(Math.log10(Math.min(1e-4, ...shown))) - 1);
  Plotly.newPlot("chart-pvalue", pTraces, layout({ yaxis: { title: "p-value", type: "log", range: [lowest, 0.05],
    dtick: lowest < -8 ? 2 : 1, exponentformat: "power" } }), config);
  if (days.length) { mdeTraces.push(hline(data.config.target_effect, "target lift")); }
  Plotly.newPlot("chart-mde", mdeTraces, layout({ yaxis: Object.assign({ title: "minimum detectable lift", rangemode: "tozero" }, pct) }), config);

  // Group-sequential test (a planned size): the z path of each treatment's CTR lift and the two-sided boundary,
  // against the share of the planned users seen at each daily look.
  if (data.group_sequential && data.group_sequential.length && document.getElementById("chart-gst")) {
    const gstTraces = [];
    data.group_sequential.forEach((g) => {
      gstTraces.push({ x: g.information, y: g.z, mode: "lines+markers", name: `z ${name(g.key)}`,
                       line: { color: colour(g.key) } });
      gstTraces.push({ x: g.information, y: g.boundary, mode: "lines", name: "boundary",
                       line: { color: "#555", dash: "dash" }, showlegend: gstTraces.length < 3 });
      gstTraces.push({ x: g.information, y: g.boundary.map((b) => (b === null ? null : -b)), mode: "lines",
                       name: "boundary", line: { color: "#555", dash: "dash" }, showlegend: false });
    });
    Plotly.newPlot("chart-gst", gstTraces, layout({ hovermode: "closest",
      xaxis: { title: "share of the planned users", tickformat: ".0%", rangemode: "tozero" },
      yaxis: { title: "z (CTR lift)" } }), config);
  }

  // 5. CTR by position, one bar per arm.
  const posTraces = Object.entries(data.positions).map(([key, p]) => ({
    x: p.position, y: p.ctr, type: "bar", name: name(key), marker: { color: colour(key) },
  }));
  Plotly.newPlot("chart-position", posTraces, layout({ barmode: "group", hovermode: "closest",
    xaxis: { title: "position", dtick: 1 }, yaxis: Object.assign({ title: "CTR" }, { tickformat: ".1%" }) }), config);

  // 6. Per-user CTR histogram, as the share of each arm's users.
  const edges = data.histogram.edges;
  const centres = edges.slice(0, -1).map((e, i) => (e + edges[i + 1]) / 2);
  const histTraces = Object.entries(data.histogram.counts).map(([key, counts]) => {
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    return { x: centres, y: counts.map((c) => c / total), type: "bar", name: name(key), opacity: 0.7,
             marker: { color: colour(key) }, width: (edges[1] - edges[0]) * 0.9 };
  });
  Plotly.newPlot("chart-histogram", histTraces, layout({ barmode: "overlay", hovermode: "closest",
    xaxis: { title: "per-user CTR", tickformat: ".0%" }, yaxis: { title: "share of users", tickformat: ".0%" } }), config);
  document.body.dataset.chartsReady = "1";
})();
