// Thumbs up or down, with an optional comment, on an answer: POST .../messages/{id}/feedback/.
// The rating is sent on a click; Enter in the comment sends it again with the comment.
import {api} from "./common.js";

async function give(form, rating) {
  const status = form.querySelector(".feedback-status");
  const comment = form.querySelector('input[name="comment"]').value;
  try {
    await api(form.dataset.feedbackUrl, {method: "POST", json: {rating, comment}});
    for (const button of form.querySelectorAll("button[data-rating]")) {
      button.setAttribute("aria-pressed", String(button.dataset.rating === rating));
    }
    status.textContent = "Thank you: your feedback was sent.";
  } catch (error) {
    status.textContent = error.message;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest(".feedback button[data-rating]");
  if (button) give(button.closest("form"), button.dataset.rating);
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.feedback");
  if (!form) return;
  event.preventDefault();
  const pressed = form.querySelector('button[aria-pressed="true"]');
  if (pressed) give(form, pressed.dataset.rating);
  else form.querySelector(".feedback-status").textContent = "Choose thumbs up or down first.";
});
