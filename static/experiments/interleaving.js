// Draws an interleaving experiment's charts from the results JSON embedded in the page (the API's JSON).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("results-data").textContent);
  const [teamA, teamB] = data.teams;
  const colourA = "#1f77b4", colourB = "#d62728";
  const config = { displaylogo: false, responsive: true };
  const layout = (extra) => Object.assign({
    margin: { l: 60, r: 16, t: 10, b: 40 }, legend: { orientation: "h", y: -0.18 }, hovermode: "x unified",
    font: { size: 12 }, xaxis: { type: "date", tickformat: "%b %d", dtick: 86400000 },
  }, extra);
  const band = (x, lower, upper, fill, label) => [
    { x: x, y: upper, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
    { x: x, y: lower, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: fill, name: label, hoverinfo: "skip" },
  ];
  const s = data.series;
  const hline = (y, label) => ({ x: [s.day[0], s.day[s.day.length - 1]], y: [y, y], mode: "lines", name: label,
                                 line: { color: "#555", dash: "dash", width: 1 } });
  const share = [
    ...band(s.day, s.cs_lower, s.cs_upper, "rgba(214,39,40,0.12)", "always-valid CS"),
    ...band(s.day, s.ci_lower, s.ci_upper, "rgba(214,39,40,0.28)", "95% CI"),
    { x: s.day, y: s.share_b, mode: "lines+markers", name: `share of ${teamB.name}'s credits`, line: { color: colourB } },
  ];
  if (s.day.length) { share.push(hline(0.5, "no preference")); }
  Plotly.newPlot("chart-share", share, layout({ yaxis: { title: "share of B credits", tickformat: ".0%" } }), config);
  const p = [{ x: s.day, y: s.always_valid_p, mode: "lines+markers", name: "always-valid p", line: { color: colourB } }];
  if (s.day.length) { p.push(hline(data.config.alpha, `alpha = ${data.config.alpha}`)); }
  Plotly.newPlot("chart-pvalue", p, layout({ yaxis: { title: "p-value", type: "log", range: [-4, 0.05], dtick: 1,
                                                      exponentformat: "power" } }), config);
  const pos = data.positions;
  Plotly.newPlot("chart-position", [
    { x: pos.position, y: pos.clicks_a, type: "bar", name: `${teamA.name} (A)`, marker: { color: colourA } },
    { x: pos.position, y: pos.clicks_b, type: "bar", name: `${teamB.name} (B)`, marker: { color: colourB } },
  ], Object.assign(layout({}), { barmode: "group", xaxis: { title: "position", dtick: 1 }, yaxis: { title: "credited clicks" } }),
  config);
  document.body.dataset.chartsReady = "1";
})();
