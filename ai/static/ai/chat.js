// Chat page: send a message, draw the answer's frames as they stream, mark how it ended.
//
// Two seams: `transport` carries frames (a resumable WebSocket: open, send, cancel; it reconnects
// and resumes an answer after a dropped connection or a reload, see stream-resume.js) and
// `renderFrame(frame)` draws one frame (start / token / done / error), whatever carried it.
// While an answer streams, its Markdown is drawn as it comes (markdown.js: DOM nodes only, never
// parsed HTML); once it has ended, the server's rendering of the saved message replaces it. A new
// conversation shows in the header and the list as soon as its start frame names it. Each answer
// can be copied (its Markdown) or regenerated, each question edited and sent again: both are new
// turns from that question (frames "regenerate" / "edit"); the start frame names the first message
// they replace ("replaces"), and the page drops it and everything after it.
import {el} from "./common.js";
import {renderMarkdown} from "./markdown.js";

const form = document.getElementById("chat");
const box = document.getElementById("message");
const messages = document.getElementById("messages");
const errorBox = document.getElementById("chat-error");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const counter = document.getElementById("char-count");
const maxChars = Number(form.dataset.maxChars);

const state = {
  conversationId: messages.dataset.conversationId ? Number(messages.dataset.conversationId) : null,
  pending: null, // the question sent and not yet accepted: {text, node, fromComposer}
  answer: null, // the answer being streamed: {node, text, messageId}
};

const characters = (text) => [...text].length; // code points, as the server counts them

function scrollToEnd() { messages.scrollTop = messages.scrollHeight; }

function bubble(role, text) {
  document.getElementById("chat-empty")?.remove();
  const node = el("div", undefined, {"class": `msg ${role}`});
  node.append(el("div", text, {"class": role === "assistant" ? "text prose" : "text"}));
  messages.append(node);
  scrollToEnd();
  return node;
}

function mark(node, status, note) {
  node.dataset.status = status;
  const line = el("p", undefined, {"class": "msg-status"});
  line.append(el("span", status === "error" ? "Failed" : "Stopped", {"class": `badge badge-${status}`}), ` ${note}`);
  node.append(line);
}

function streaming(on) {
  sendButton.disabled = on;
  stopButton.disabled = !on;
}

function showError(message) { errorBox.textContent = message; }

// The allowance is spent: say who can do what. Owners change the plan on the billing page; others ask them.
function showQuotaError(message) {
  errorBox.textContent = `${message.replace(/\s*Upgrade the plan to continue\.?\s*$/, "")} `;
  if (form.dataset.owner === "true") {
    const link = el("a", "Upgrade the plan", {href: "/billing/"});
    errorBox.append(link, " on the billing page to continue.");
  } else {
    errorBox.append("Only an owner of this workspace can upgrade its plan: ask an owner to do it.");
  }
}

// Replace parts of the page with the server's rendering of this conversation.
async function refreshFromServer(conversationId, selectors) {
  const response = await fetch(`/chat/${conversationId}/`, {credentials: "same-origin"});
  if (!response.ok) return null;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of selectors) {
    const next = fresh.querySelector(selector);
    const current = document.querySelector(selector);
    if (next && current) current.replaceWith(document.importNode(next, true));
  }
  return fresh;
}

// A message's buttons, as the server draws them (ai/_message.html).
function actions(buttons) {
  const row = el("div", undefined, {"class": "msg-actions"});
  for (const [action, label] of buttons) {
    row.append(el("button", label, {type: "button", "class": "btn btn-small btn-ghost", "data-action": action}));
  }
  return row;
}

// A regenerated or edited turn replaces the message `messageId` and everything after it.
function dropFrom(messageId, keep) {
  let node = messages.querySelector(`.msg[data-message-id="${messageId}"]`);
  while (node) {
    const next = node.nextElementSibling;
    if (node !== keep) node.remove();
    node = next;
  }
}

// The conversation a start frame named, shown as the server will show it (its title is the
// question's first 80 characters), before its answer ends.
function showConversation(conversationId, question) {
  const title = question.slice(0, 80);
  document.getElementById("conversation-title").textContent = title;
  document.title = `${title} — ${document.title.replace(/^.* — (Chat — )/, "$1")}`;
  const list = document.getElementById("conversations");
  if (!list || list.querySelector(`a[data-id="${conversationId}"]`)) return;
  document.getElementById("no-conversations")?.remove();
  list.querySelectorAll("a[aria-current]").forEach((link) => link.removeAttribute("aria-current"));
  const link = el("a", title, {href: `/chat/${conversationId}/`, "data-id": String(conversationId), title, "aria-current": "page"});
  const item = el("li");
  item.append(link);
  const pinned = list.querySelectorAll("li.pinned");
  if (pinned.length) pinned[pinned.length - 1].after(item); // pinned ones stay first
  else list.prepend(item);
}

async function settle(messageId) {
  // The answer is saved before its done/error frame is sent.
  await refreshFromServer(state.conversationId, [`.msg[data-message-id="${messageId}"]`, ".thread-head", "#conversations"]);
  scrollToEnd();
}

// --- frames ----------------------------------------------------------------------------------

function renderFrame(frame) {
  if (frame.type === "start") {
    const isNew = state.conversationId !== frame.conversation_id;
    state.conversationId = frame.conversation_id;
    messages.dataset.conversationId = String(frame.conversation_id);
    if (isNew) history.replaceState(null, "", `/chat/${frame.conversation_id}/`);
    if (isNew && state.pending) showConversation(frame.conversation_id, state.pending.text);
    if (frame.replaces !== undefined) dropFrom(frame.replaces, state.pending && state.pending.node);
    if (state.pending) {
      const question = state.pending.node;
      question.dataset.accepted = "true";
      if (frame.question_id !== undefined) {
        question.dataset.messageId = frame.question_id;
        question.append(actions([["edit", "Edit"]]));
      }
      if (state.pending.fromComposer) {
        box.value = "";
        updateCounter();
      }
      state.pending = null;
    }
    const node = bubble("assistant", "");
    // A resumed answer after a reload replaces the saved part shown for it.
    messages.querySelector(`.msg[data-message-id="${frame.message_id}"]`)?.replaceWith(node);
    node.dataset.messageId = frame.message_id;
    streaming(true);
    state.answer = {node, text: "", messageId: frame.message_id};
  } else if (frame.type === "token") {
    if (!state.answer) return;
    state.answer.text += frame.token;
    renderMarkdown(state.answer.node.querySelector(".text"), state.answer.text, {open: true});
    scrollToEnd();
  } else if (frame.type === "done") {
    const answer = state.answer;
    state.answer = null;
    streaming(false);
    if (answer) settle(answer.messageId);
  } else if (frame.type === "error") {
    streaming(false);
    if (frame.error.code === "quota_exceeded") showQuotaError(frame.error.message);
    else showError(frame.error.message);
    if (state.pending) {
      // Refused before it started (too long, over quota, ...): nothing was sent, the text stays in the box.
      state.pending.node.remove();
      state.pending = null;
      box.focus();
    } else if (state.answer) {
      const answer = state.answer;
      state.answer = null;
      mark(answer.node, "error", "The answer could not be completed.");
      settle(answer.messageId);
    }
  }
}

// --- transport: one resumable WebSocket, opened on first use ------------------------------------

const transport = {
  socket: null,

  // follow: an answer to replay and follow from its start (see StrataResumableSocket).
  open(follow = null) {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new window.StrataResumableSocket(`${scheme}://${location.host}/ws/chat/`, follow);
    this.socket = socket;
    socket.onmessage = (event) => renderFrame(JSON.parse(event.data));
    socket.onresumerefused = () => streaming(false); // the saved message shown is the answer
    socket.onclose = async (event) => {
      this.socket = null;
      if (!socket.opened) return; // a refused handshake: open() says why
      const refused = event && event.code === 4403;
      if (state.answer || state.pending) {
        const message = (refused && await refusalReason()) || "The connection to the chat server was lost.";
        renderFrame({type: "error", error: {code: "connection_lost", message}});
      } else if (refused) {
        const reason = await refusalReason();
        if (reason) showError(reason);
      }
    };
    return new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = async () => reject(new Error((await refusalReason()) || "Could not connect to the chat server."));
    });
  },

  async send(payload) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) await this.open();
    this.socket.send(JSON.stringify(payload));
  },

  cancel() {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({type: "cancel"}));
  },
};

// Why the server refused or closed the chat socket, in its own words (a browser is not shown a
// refused handshake's answer): the workspace suspended or closed, the session gone. Null when the
// workspace answers normally (then it was the network).
async function refusalReason() {
  try {
    const response = await fetch("/api/usage/", {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.ok) return null;
    const body = await response.json().catch(() => null);
    return (body && body.error && body.error.message) || null;
  } catch (error) {
    return null;
  }
}

// --- the composer ------------------------------------------------------------------------------

function updateCounter() {
  const count = characters(box.value.trim());
  counter.textContent = `${count.toLocaleString()} / ${maxChars.toLocaleString()}`;
  counter.classList.toggle("over", count > maxChars);
}

// What the question may read: the ticked collections and documents (none ticked: all one may read).
function scope() {
  const picked = {};
  for (const name of ["collection_ids", "document_ids"]) {
    const ids = [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((input) => Number(input.value));
    if (ids.length) picked[name] = ids;
  }
  return picked;
}

async function send() {
  const text = box.value.trim();
  if (!text || sendButton.disabled) return;
  showError("");
  const count = characters(text);
  if (count > maxChars) {
    showError(`This message is ${count.toLocaleString()} characters long; the limit is ${maxChars.toLocaleString()}. Shorten it and send again.`);
    box.focus();
    return;
  }
  const payload = state.conversationId ? {message: text, conversation_id: state.conversationId} : {message: text};
  await ask(text, payload, true);
}

// Send a turn (a question, a regenerate or an edit) with its question shown as pending.
async function ask(text, payload, fromComposer) {
  state.pending = {text, node: bubble("user", text), fromComposer};
  streaming(true);
  Object.assign(payload, scope());
  try {
    await transport.send(payload);
  } catch (error) {
    renderFrame({type: "error", error: {code: "connection_failed", message: error.message}});
  }
}

// --- copy, regenerate, edit ----------------------------------------------------------------------

async function copy(button) {
  const message = button.closest(".msg");
  const source = message.querySelector("template.markdown-source");
  const text = source ? source.content.textContent : message.querySelector(".text").innerText;
  let copied = false;
  try {
    // The clipboard API may wait on a permission prompt: not for long.
    const timeout = new Promise((resolve, reject) => { setTimeout(() => reject(new Error("timeout")), 1500); });
    await Promise.race([navigator.clipboard.writeText(text), timeout]);
    copied = true;
  } catch (error) {
    copied = copyBySelection(text);
  }
  button.textContent = copied ? "Copied" : "Copy failed";
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

// Without the clipboard API (an insecure origin, a refused permission): the older way.
function copyBySelection(text) {
  const area = el("textarea", undefined, {"class": "sr-only", "aria-hidden": "true"});
  area.value = text;
  document.body.append(area);
  area.select();
  try {
    return document.execCommand("copy");
  } catch (error) {
    return false;
  } finally {
    area.remove();
  }
}

function regenerate(button) {
  if (sendButton.disabled) return; // an answer is streaming
  const answer = button.closest(".msg");
  let question = answer.previousElementSibling;
  while (question && !question.classList.contains("user")) question = question.previousElementSibling;
  if (!question) return;
  showError("");
  ask(question.querySelector(".text").textContent, {type: "regenerate", message_id: Number(answer.dataset.messageId)}, false);
}

function edit(button) {
  const question = button.closest(".msg");
  if (question.querySelector(".msg-editor")) return;
  const text = question.querySelector(".text");
  const editor = el("form", undefined, {"class": "msg-editor"});
  const area = el("textarea", undefined, {rows: "3", "aria-label": "Edit your question"});
  area.value = text.textContent;
  const foot = el("div", undefined, {"class": "composer-foot"});
  const cancel = el("button", "Cancel", {type: "button", "class": "btn btn-small"});
  foot.append(cancel, el("button", "Save and send", {type: "submit", "class": "btn btn-primary btn-small"}));
  editor.append(area, foot);
  text.hidden = true;
  button.closest(".msg-actions").hidden = true;
  question.append(editor);
  area.focus();
  const close = () => { editor.remove(); text.hidden = false; button.closest(".msg-actions").hidden = false; };
  cancel.addEventListener("click", close);
  editor.addEventListener("submit", (event) => {
    event.preventDefault();
    const changed = area.value.trim();
    if (!changed || sendButton.disabled) return;
    close();
    showError("");
    ask(changed, {type: "edit", message_id: Number(question.dataset.messageId), message: changed}, false);
  });
}

messages.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  if (button.dataset.action === "copy") copy(button);
  else if (button.dataset.action === "regenerate") regenerate(button);
  else if (button.dataset.action === "edit") edit(button);
});

form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
box.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
box.addEventListener("input", updateCounter);

stopButton.addEventListener("click", () => {
  transport.cancel();
  streaming(false);
  const answer = state.answer;
  state.answer = null;
  if (!answer) return;
  mark(answer.node, "interrupted", "This answer was stopped before it was complete.");
  // The server saves the partial answer as it stops; show its rendering once it is there.
  setTimeout(async () => {
    const fresh = await refreshFromServer(state.conversationId, ["#conversations"]);
    const saved = fresh?.querySelector(`.msg[data-message-id="${answer.messageId}"]`);
    if (saved && saved.dataset.status === "interrupted" && saved.querySelector(".text").textContent.trim()) {
      answer.node.replaceWith(document.importNode(saved, true));
    }
  }, 800);
});

// An answer was streaming when this tab reloaded, or the page shows an answer not settled yet (it
// was served while the answer streamed or settled, maybe to another tab): the socket replays it
// from its start and follows it. One whose process died has no log left: its saved text stands.
const inFlight = window.StrataResumableSocket.pending();
const lastAnswer = [...messages.querySelectorAll(".msg.assistant")].at(-1);
const unsettled = lastAnswer && lastAnswer.dataset.unsettled === "true"
  ? {messageId: Number(lastAnswer.dataset.messageId), conversationId: state.conversationId}
  : null;
if (unsettled || (inFlight && inFlight.conversationId === state.conversationId)) {
  streaming(true);
  transport.open(unsettled).catch((error) => { streaming(false); showError(error.message); });
} else {
  streaming(false); // Send starts disabled (chat.html) until this module has run
}

updateCounter();
scrollToEnd();
form.dataset.ready = "true";
