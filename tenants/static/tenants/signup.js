// Signup page: posts to the signup API, shows field errors next to their fields, and goes on to
// Stripe Checkout for a paid plan or to the new workspace's log-in page for a free one.
(() => {
  const form = document.getElementById("signup");
  const result = document.getElementById("result");
  const button = document.getElementById("signup-submit");
  const subdomain = document.getElementById("subdomain");
  const preview = document.getElementById("subdomain-preview");

  // On input, and at once: a value the browser restored (back, autofill) is previewed too.
  const showPreview = () => { preview.textContent = subdomain.value.trim().toLowerCase() || "acme"; };
  subdomain.addEventListener("input", showPreview);
  showPreview();

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
    // Every invalid field says so at once, not one browser bubble at a time.
    const invalid = [...form.elements].filter((input) => input.willValidate && !input.checkValidity());
    invalid.forEach((input) => fieldError(input.name, input.validationMessage));
    if (invalid.length) {
      invalid[0].focus();
      return;
    }
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
      // The form is done with: the way on replaces it rather than sitting under an emptied copy.
      const link = document.createElement("a");
      link.className = "btn btn-primary";
      link.id = "signup-continue";
      link.href = data.login_url || `${data.tenant.url}login/`;
      link.textContent = `Go to ${data.tenant.name}`;
      say("notice-success", `${data.tenant.name} is ready at ${data.tenant.url}`, data.note ? ` (${data.note})` : "");
      const actions = document.createElement("div");
      actions.className = "form-actions";
      actions.append(link);
      result.append(actions);
      form.hidden = true;
      link.focus();
    } catch (error) {
      say("notice-error", "Could not reach Strata. Check your connection and try again.");
    } finally {
      button.disabled = false;
    }
  });
})();
