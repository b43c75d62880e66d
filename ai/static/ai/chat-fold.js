// The conversations panel folds away on a phone, unless the page answers a search of them (its
// results are the point). A classic script right after the panel, so it runs before the rest of
// the page is parsed and drawn: folded later (by chat.js, a module, after load) it moved the page
// up under a tap already aimed at the Rename or Delete button below it.
(() => {
  const panel = document.getElementById("conversations-panel");
  if (panel && window.matchMedia("(max-width: 760px)").matches && !document.getElementById("conversation-search")?.value) {
    panel.open = false;
  }
})();
