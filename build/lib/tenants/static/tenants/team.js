// Team and account pages: confirm destructive forms, copy a new API key. No inline script anywhere.
(() => {
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  document.querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (error) {
        window.getSelection().selectAllChildren(document.getElementById(button.dataset.copy));
        button.textContent = "Selected: press Ctrl-C";
      }
    });
  });
})();
