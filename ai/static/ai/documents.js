// Documents page: several files at once (chosen or dropped on the upload card), each sent on its own
// with a progress bar of its own; pasted text still goes through the form's htmx request.
import {csrf, el} from "./common.js";

const form = document.getElementById("upload");
const input = document.getElementById("file");
const card = document.getElementById("upload-card");
const queue = document.getElementById("upload-queue");

function listRefresh() {
  const collection = new URLSearchParams(location.search).get("collection");
  window.htmx?.ajax("GET", `/documents/list/${collection ? `?collection=${collection}` : ""}`,
    {target: "#document-list", swap: "outerHTML"});
}

// One file: its own request (the same endpoint the form posts to) and its own progress bar.
function uploadOne(file, title) {
  const progress = el("progress", "0%", {max: "100", value: "0", "aria-label": `Uploading ${file.name}`});
  const state = el("span", "Uploading…", {"class": "upload-state"});
  const item = el("li", undefined, {"class": "upload-item", "data-name": file.name});
  item.append(el("span", file.name, {"class": "upload-name"}), progress, state);
  queue.append(item);
  const data = new FormData();
  data.append("file", file);
  if (title) data.append("title", title);
  data.append("collection_id", form.elements.collection_id.value);
  data.append("csrfmiddlewaretoken", csrf());
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("HX-Request", "true");  // the fragment, not a redirect
    request.setRequestHeader("X-CSRFToken", csrf());
    request.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      progress.value = Math.round((100 * event.loaded) / event.total);
      progress.textContent = `${progress.value}%`;
    });
    request.addEventListener("loadend", () => {
      const ok = request.status === 200;
      progress.value = ok ? 100 : progress.value;
      const answer = new DOMParser().parseFromString(request.responseText || "", "text/html");
      const error = answer.querySelector("[role=alert]");
      state.textContent = ok ? "Added; indexing…" : (error ? error.textContent.trim() : `Failed (${request.status || "no connection"})`);
      item.classList.add(ok ? "is-done" : "is-failed");
      resolve(ok);
    });
    request.send(data);
  });
}

const sameFiles = (list, files) => list.length === files.length && files.every((file, i) => list[i] === file);

// What the form held when it was sent is cleared once it was added; a refused file or title stays
// to be corrected, and a field changed meanwhile (a file picked while another uploads) is left alone.
async function uploadAll(files, {fromInput = false} = {}) {
  const chosen = [...files];
  if (!chosen.length) return;
  // A title typed in the form names a single file; several files take theirs from themselves.
  const title = chosen.length === 1 ? form.elements.title.value.trim() : "";
  const sentTitle = form.elements.title.value;
  const added = await Promise.all(chosen.map((file) => uploadOne(file, title)));
  const refused = chosen.filter((file, i) => !added[i]);
  if (fromInput && sameFiles(input.files, chosen)) {
    const kept = new DataTransfer();
    refused.forEach((file) => kept.items.add(file));
    input.files = kept.files;
  }
  if (!refused.length && form.elements.title.value === sentTitle) form.elements.title.value = "";
  if (refused.length < chosen.length) listRefresh();
}

// Files chosen in the form go one request each; text with no file goes the usual (htmx) way.
// Capturing at the document runs before htmx's own listener on the form, and stops it.
let sentText = null;
document.addEventListener("submit", (event) => {
  if (event.target !== form) return;
  if (!input.files.length) {
    sentText = {title: form.elements.title.value, content: form.elements.content.value};
    return;
  }
  event.preventDefault();
  event.stopPropagation();
  uploadAll(input.files, {fromInput: true});
}, true);

// Pasted text that was added leaves the form; refused (4xx), it stays to be corrected.
form.addEventListener("htmx:afterRequest", (event) => {
  if (event.target !== form || !sentText || event.detail.xhr.status >= 400) return;
  for (const name of ["title", "content"]) {
    if (form.elements[name].value === sentText[name]) form.elements[name].value = "";
  }
  sentText = null;
});

for (const name of ["dragenter", "dragover"]) {
  card.addEventListener(name, (event) => { event.preventDefault(); card.classList.add("is-dropping"); });
}
card.addEventListener("dragleave", () => card.classList.remove("is-dropping"));
card.addEventListener("drop", (event) => {
  event.preventDefault();
  card.classList.remove("is-dropping");
  uploadAll(event.dataTransfer.files);
});
