/* Draws the monitoring dashboards' charts with Chart.js from the page's JSON (id "dashboard-data"):
   {chart id: {kind: "time" | "xy", labels, datasets, x_title, y_title}}, one <canvas data-chart=id> each. */
(function () {
  "use strict";
  const PALETTE = ["#2f6db5", "#d9822b", "#3a9d5d", "#c23c3c", "#8a5cc2", "#8c6d4f", "#d36ba6", "#6f7a85"];

  function styled(dataset, i) {
    const color = dataset.diagonal ? "#999999" : PALETTE[i % PALETTE.length];
    return Object.assign({}, dataset, {
      borderColor: color,
      backgroundColor: color,
      borderWidth: dataset.diagonal ? 1 : 2,
      borderDash: dataset.diagonal ? [6, 4] : [],
      pointRadius: dataset.diagonal ? 0 : 2,
      showLine: true,
      spanGaps: false,
    });
  }

  function pointLabel(context) {
    const raw = context.raw || {};
    const value = typeof context.parsed.y === "number" ? context.parsed.y.toPrecision(4) : context.parsed.y;
    const extra = raw.bin ? ` (bin ${raw.bin}, ${raw.n} observations)` : "";
    return `${context.dataset.label}: ${value}${extra}`;
  }

  function config(spec) {
    const xy = spec.kind === "xy";
    const title = (text) => ({ display: Boolean(text), text: text || "" });
    return {
      type: xy ? "scatter" : "line",
      data: { labels: xy ? undefined : spec.labels, datasets: spec.datasets.map(styled) },
      options: {
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: xy ? "nearest" : "index", intersect: false },
        scales: {
          x: Object.assign(xy ? { type: "linear", min: 0 } : { ticks: { maxTicksLimit: 12 } }, { title: title(spec.x_title) }),
          y: { beginAtZero: true, title: title(spec.y_title) },
        },
        plugins: { tooltip: { callbacks: { label: pointLabel } }, legend: { position: "bottom" } },
      },
    };
  }

  function draw() {
    const specs = JSON.parse(document.getElementById("dashboard-data").textContent);
    for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
      if (typeof Chart === "undefined") {
        canvas.parentNode.outerHTML = '<p class="no-data">Charts need Chart.js: run platform/install.sh (it fetches it with npm).</p>';
      } else {
        new Chart(canvas, config(specs[canvas.dataset.chart]));
      }
    }
  }

  document.addEventListener("DOMContentLoaded", draw);
})();
