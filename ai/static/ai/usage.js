// Usage page: this period's tokens against the plan's allowance.
import {api, el} from "./common.js";

async function usagePage() {
  const usage = await api("/api/usage/");
  document.getElementById("usage-summary").textContent =
    `${usage.used.toLocaleString()} of ${usage.included.toLocaleString()} tokens used (${usage.remaining.toLocaleString()} left) ` +
    `from ${usage.period_start} to ${usage.period_end}.`;
  document.getElementById("usage-features").replaceChildren(...Object.entries(usage.by_feature).map(([feature, row]) => {
    const tr = el("tr");
    tr.append(el("td", feature), el("td", String(row.tokens)), el("td", String(row.input_tokens)), el("td", String(row.output_tokens)));
    return tr;
  }));
}

usagePage();
