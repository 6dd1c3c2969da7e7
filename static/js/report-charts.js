/* The quarterly report's charts: data from the page's JSON block (json_script, never
   executed), drawn by the vendored Chart.js. No inline script: CSP script-src 'self'. */
(function () {
  "use strict";

  function draw() {
    var block = document.getElementById("report-charts");
    if (!block || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(block.textContent);
    var options = { responsive: true, animation: false, plugins: { legend: { display: false } } };
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var name = canvas.getAttribute("data-chart");
      var chart = data[name];
      var datasets;
      if (name === "latency") {
        datasets = [
          { label: canvas.getAttribute("data-label-median"), data: chart.median, backgroundColor: "#3b6fb6" },
          { label: canvas.getAttribute("data-label-p90"), data: chart.p90, backgroundColor: "#d98c2b" }
        ];
      } else {
        datasets = [{ label: canvas.getAttribute("data-label"), data: chart.values, backgroundColor: "#3b6fb6" }];
      }
      new window.Chart(canvas, {
        type: "bar",
        data: { labels: chart.labels, datasets: datasets },
        options: name === "latency" ? Object.assign({}, options, { plugins: { legend: { display: true } } }) : options
      });
      canvas.setAttribute("data-drawn", "true");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
