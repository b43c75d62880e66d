// Behaviour every page shares: upload progress for htmx forms, menus that close like menus.
// (No inline scripts or handlers anywhere: the Content-Security-Policy forbids them.)

// A <progress> inside an htmx form follows its upload.
document.addEventListener("htmx:xhr:progress", (event) => {
  const progress = event.target.querySelector?.("progress");
  if (!progress || !event.detail.lengthComputable) return;
  progress.hidden = false;
  progress.value = Math.round((100 * event.detail.loaded) / event.detail.total);
  progress.textContent = `${progress.value}%`;
});

document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const progress = form.querySelector("progress");
  if (progress) { progress.hidden = true; progress.value = 0; }
  // (The upload form empties itself: ai/static/ai/documents.js keeps what was refused.)
});

// A form with data-confirm asks first (removing, revoking, leaving, changing the plan).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});

// Open menus (<details class="menu">) close on Escape and on a click elsewhere.
document.addEventListener("click", (event) => {
  document.querySelectorAll("details.menu[open]").forEach((menu) => {
    if (!menu.contains(event.target)) menu.open = false;
  });
});
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape") return;
  document.querySelectorAll("details.menu[open]").forEach((menu) => { menu.open = false; });
});

// A page that only hands the browser on (switching workspace) follows its link at once; without
// scripts the link is there to click. (A form's redirect to another host would break the CSP's form-action.)
const onward = document.querySelector("a[data-follow]");
if (onward) window.location.replace(onward.href);
