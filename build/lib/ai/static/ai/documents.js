// Documents page: upload, ingestion status, search.
import {api, el} from "./common.js";

function documentsPage() {
  const list = document.getElementById("documents");
  const status = document.getElementById("upload-status");
  let pollTimer = null;

  async function refresh() {
    const page = await api("/api/documents/");
    list.replaceChildren(...page.results.map((doc) => {
      const row = el("tr", undefined, {"data-id": doc.id});
      row.append(el("td", doc.title), el("td", doc.status + (doc.error ? `: ${doc.error}` : ""), {"class": "doc-status"}),
        el("td", String(doc.chunk_count)), el("td", new Date(doc.created).toLocaleString()));
      const remove = el("button", "Delete", {type: "button"});
      remove.onclick = async () => { await api(`/api/documents/${doc.id}/`, {method: "DELETE"}); refresh(); };
      const cell = el("td"); cell.append(remove); row.append(cell);
      return row;
    }));
    clearTimeout(pollTimer);
    if (page.results.some((doc) => doc.status === "pending")) pollTimer = setTimeout(refresh, 1000);
    else if (status.textContent.endsWith("indexing…")) status.textContent = status.textContent.replace("indexing…", "ready to search.");
  }

  document.getElementById("upload").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const data = new FormData(form);
    if (!data.get("file") || !data.get("file").size) data.delete("file");
    status.className = ""; status.textContent = "Uploading…";
    try {
      const doc = await api("/api/documents/", {method: "POST", body: data});
      status.textContent = `Added “${doc.title}”; indexing…`;
      form.reset();
      refresh();
    } catch (error) { status.className = "error"; status.textContent = error.message; }
  });

  document.getElementById("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const results = document.getElementById("results");
    try {
      const body = await api("/api/search/", {method: "POST", json: {query: document.getElementById("query").value, k: 5}});
      results.replaceChildren(...body.results.map((hit) => {
        const item = el("li");
        item.append(el("strong", hit.title), el("span", ` (distance ${hit.distance.toFixed(3)})`, {"class": "muted"}), el("p", hit.text));
        return item;
      }));
      if (!body.results.length) results.replaceChildren(el("li", "No matching passages."));
    } catch (error) { results.replaceChildren(el("li", error.message, {"class": "error"})); }
  });
  refresh();
}

documentsPage();
