// The workbench's charts: each chart's data sits in a <script type="application/json">
// element beside it (the CSP allows no inline script), drawn with the vendored uPlot.
// A chart `#x-chart` reads `#x-data`; `data-chart="lines"` draws lines (one per series
// over labelled periods), else bars.
"use strict";
(function () {
  var PALETTE = ["#1f3a68", "#b35c00", "#2e7d32", "#8e24aa", "#00838f", "#c62828", "#5d4037", "#37474f"];

  function bars(el, data) {
    var stages = data.stages;
    if (!stages.length) { return; }
    var xs = stages.map(function (_, i) { return i; });
    var series = [{}];
    var columns = [xs];
    var n = data.series.length;
    data.series.forEach(function (s, i) {
      series.push({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        fill: PALETTE[i % PALETTE.length],
        paths: uPlot.paths.bars({ size: [0.8 / n, 60], align: 0, gap: 1 }),
        points: { show: false }
      });
      columns.push(s.values);
    });
    var opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 260,
      series: series,
      scales: { x: { time: false, range: [-0.5, stages.length - 0.5] } },
      axes: [
        { values: function (u, ticks) { return ticks.map(function (t) { return stages[t] || ""; }); }, splits: function () { return xs; } },
        {}
      ],
      legend: { show: n > 1 }
    };
    return new uPlot(opts, columns, el);
  }

  // One line per series over the periods `data.labels` (null: no value, a gap); at most
  // about ten period labels on the axis.
  function lines(el, data) {
    var labels = data.labels;
    if (!labels.length || !data.series.length) { return; }
    var xs = labels.map(function (_, i) { return i; });
    var step = Math.max(1, Math.ceil(labels.length / 10));
    var series = [{ label: data.x || "", value: function (u, v) { return v == null ? "" : labels[v] || ""; } }];
    var columns = [xs];
    data.series.forEach(function (s, i) {
      series.push({ label: s.label, stroke: PALETTE[i % PALETTE.length], width: 2, points: { show: labels.length <= 40 } });
      columns.push(s.values);
    });
    var opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 260,
      series: series,
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
      axes: [
        { values: function (u, ticks) { return ticks.map(function (t) { return labels[t] || ""; }); },
          splits: function () { return xs.filter(function (x) { return x % step === 0; }); } },
        {}
      ]
    };
    return new uPlot(opts, columns, el);
  }

  document.querySelectorAll("[data-chart], #funnel-chart").forEach(function (el) {
    var source = document.getElementById(el.id.replace(/-chart$/, "-data"));
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    (el.getAttribute("data-chart") === "lines" ? lines : bars)(el, data);
    el.setAttribute("data-drawn", "true");
  });
})();
