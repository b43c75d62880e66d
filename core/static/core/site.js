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

// Keyboard shortcuts, as the list in ai/app_base.html (#shortcuts, opened by "?") shows them:
// n or Ctrl/Cmd+Shift+O a new chat, / search, ? the list. None fires while typing in a field;
// the single keys can be turned off (WCAG 2.1.4), remembered by this browser.
const shortcuts = document.getElementById("shortcuts");
const singleKeysBox = document.getElementById("shortcuts-single-keys");
const SINGLE_KEYS = "strata.shortcuts.single-keys";
const SEARCH_NEXT = "strata.shortcuts.search-next";

function singleKeysOn() {
  try { return window.localStorage.getItem(SINGLE_KEYS) !== "off"; } catch { return true; }
}

// Fields that take typed characters (a checkbox or a button does not: a key there is no typing).
const KEYLESS_INPUTS = new Set(["checkbox", "radio", "button", "submit", "reset", "file", "range", "color", "image"]);
function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target instanceof HTMLInputElement) return !KEYLESS_INPUTS.has(target.type);
  return target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement || target.isContentEditable;
}

function shortcutsShow() {
  if (!shortcuts || shortcuts.open) return;
  document.querySelectorAll("details.menu[open]").forEach((menu) => { menu.open = false; });
  if (singleKeysBox) singleKeysBox.checked = singleKeysOn();
  shortcuts.showModal();
}

function chatNew() {
  if (window.location.pathname === "/chat/") document.getElementById("message")?.focus();
  else window.location.assign("/chat/");
}

// The page's own search box (documents, conversations); elsewhere, the documents page's.
function searchFocus() {
  const box = document.querySelector("main [role='search'] input:not([type='hidden']), main input[type='search']");
  if (!box) {
    // The documents page focuses its box on arrival. (Not by a #fragment: Chromium moves the
    // focus to a fragment's target after the page's scripts have run.)
    try { window.sessionStorage.setItem(SEARCH_NEXT, "1"); } catch { /* then just go there */ }
    window.location.assign("/");
    return;
  }
  // On a phone the conversations (and their search) fold into a closed <details>: unfold it first.
  for (let folded = box.closest("details:not([open])"); folded; folded = folded.parentElement?.closest("details:not([open])")) {
    folded.open = true;
  }
  box.focus();
  box.select();
}

try {
  if (window.sessionStorage.getItem(SEARCH_NEXT)) {
    window.sessionStorage.removeItem(SEARCH_NEXT);
    document.querySelector("main [role='search'] input:not([type='hidden'])")?.focus();
  }
} catch { /* storage refused */ }

singleKeysBox?.addEventListener("change", () => {
  try {
    if (singleKeysBox.checked) window.localStorage.removeItem(SINGLE_KEYS);
    else window.localStorage.setItem(SINGLE_KEYS, "off");
  } catch { /* storage refused: the choice lasts for this page only */ }
});
document.querySelectorAll("[data-shortcuts-open]").forEach((button) => button.addEventListener("click", shortcutsShow));
// Closed, the list leaves no focus inside it: Chromium moves it out only at the next rendering,
// and a key pressed before then would land on the list's checkbox.
shortcuts?.addEventListener("close", () => {
  if (shortcuts.contains(document.activeElement)) document.activeElement.blur();
});

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.isComposing || typing(event.target) || shortcuts?.open) return;
  const command = event.ctrlKey || event.metaKey;
  if (command && event.shiftKey && !event.altKey && event.key.toLowerCase() === "o") {
    event.preventDefault();
    chatNew();
    return;
  }
  if (command || event.altKey || !singleKeysOn()) return;
  const action = {n: chatNew, "/": searchFocus, "?": shortcutsShow}[event.key];
  if (action) {
    event.preventDefault();
    action();
  }
});
