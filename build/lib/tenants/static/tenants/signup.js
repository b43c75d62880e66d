// Signup page: posts to the signup API, shows field errors next to their fields, and goes on to
// Stripe Checkout for a paid plan or to the new workspace's log-in page for a free one.
(() => {
  const form = document.getElementById("signup");
  const result = document.getElementById("result");
  const button = document.getElementById("signup-submit");
  const subdomain = document.getElementById("subdomain");
  const preview = document.getElementById("subdomain-preview");

  subdomain.addEventListener("input", () => { preview.textContent = subdomain.value.trim().toLowerCase() || "acme"; });

  function clearErrors() {
    form.querySelectorAll(".field-error").forEach((node) => node.remove());
    form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    result.replaceChildren();
  }

  function fieldError(name, message) {
    const input = form.elements[name];
    if (!input) return false;
    input.setAttribute("aria-invalid", "true");
    const note = document.createElement("p");
    note.className = "field-error error small";
    note.textContent = message;
    input.insertAdjacentElement("afterend", note);
    return true;
  }

  function say(className, ...parts) {
    const note = document.createElement("p");
    note.className = `notice ${className}`;
    note.append(...parts);
    result.replaceChildren(note);
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    if (!form.reportValidity()) return;
    button.disabled = true;
    try {
      const response = await fetch("/api/signup/", {
        method: "POST",
        headers: {"Content-Type": "application/json", "Accept": "application/json"},
        body: JSON.stringify(Object.fromEntries(new FormData(form))),
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const error = (data && data.error) || {message: `Signup failed (${response.status}).`};
        const fields = error.fields || {};
        const shown = Object.entries(fields).map(([name, messages]) => fieldError(name, [].concat(messages).join(" ")));
        if (!shown.some(Boolean)) say("notice-error", error.message);
        return;
      }
      if (data.checkout_url) {
        say("notice-info", "Taking you to Stripe to pay…");
        window.location.assign(data.checkout_url);
        return;
      }
      const link = document.createElement("a");
      link.href = `${data.tenant.url}login/`;
      link.textContent = `Log in to ${data.tenant.name}`;
      say("notice-success", "Your organisation is ready. ", link, data.note ? ` (${data.note})` : "");
      form.reset();
    } catch (error) {
      say("notice-error", "Could not reach Strata. Check your connection and try again.");
    } finally {
      button.disabled = false;
    }
  });
})();
