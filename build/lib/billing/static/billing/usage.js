// Usage chart: tokens per day as stacked bars (by feature or by person), with the running total
// and the plan's allowance as lines. The figures come from the page (json_script), not an API call.
(() => {
  const canvas = document.getElementById("usage-chart");
  const source = document.getElementById("usage-data");
  if (!canvas || !source || typeof Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const palette = ["#3b5bdb", "#12b886", "#f59f00", "#e64980", "#7048e8", "#15aabf", "#82c91e", "#fd7e14", "#868e96"];
  const day = (iso) => new Date(`${iso}T00:00:00Z`).toLocaleDateString(undefined, {day: "numeric", month: "short", timeZone: "UTC"});
  const tokens = (value) => Number(value).toLocaleString();

  function bars(split) {
    const series = split === "person" ? data.by_person : data.by_feature;
    return Object.entries(series).map(([name, values], index) => ({
      type: "bar",
      label: split === "person" ? name : (data.labels[name] || name),
      data: values,
      backgroundColor: palette[index % palette.length],
      stack: "tokens",
      yAxisID: "y",
      order: 2,
    }));
  }

  const lines = [
    {type: "line", label: "Running total", data: data.cumulative, borderColor: "#1d2330", backgroundColor: "#1d2330",
      pointRadius: 0, borderWidth: 2, yAxisID: "y1", order: 1, spanGaps: false},
    {type: "line", label: "Plan allowance", data: data.days.map(() => data.allowance), borderColor: "#c92a2a",
      backgroundColor: "#c92a2a", borderDash: [6, 4], pointRadius: 0, borderWidth: 2, yAxisID: "y1", order: 0},
  ];

  const chart = new Chart(canvas, {
    data: {labels: data.days.map(day), datasets: [...bars("feature"), ...lines]},
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: {mode: "index", intersect: false},
      plugins: {
        legend: {position: "bottom", labels: {boxWidth: 12}},
        tooltip: {callbacks: {label: (item) => `${item.dataset.label}: ${tokens(item.parsed.y)}`}},
      },
      scales: {
        x: {stacked: true, ticks: {maxRotation: 0, autoSkipPadding: 12}},
        y: {stacked: true, beginAtZero: true, title: {display: true, text: "tokens per day"}, ticks: {callback: tokens}},
        y1: {position: "right", beginAtZero: true, grid: {drawOnChartArea: false}, title: {display: true, text: "period total"},
          ticks: {callback: tokens}},
      },
    },
  });

  document.querySelectorAll("[data-split]").forEach((button) => {
    button.addEventListener("click", () => {
      document.querySelectorAll("[data-split]").forEach((other) => other.setAttribute("aria-pressed", String(other === button)));
      chart.data.datasets = [...bars(button.dataset.split), ...lines];
      chart.update();
    });
  });
})();
