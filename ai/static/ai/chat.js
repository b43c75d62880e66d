// Chat page: conversations and answers streamed over the WebSocket.
import {api, el} from "./common.js";

function chatPage() {
  const messages = document.getElementById("messages");
  const errorBox = document.getElementById("chat-error");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  let conversationId = null;
  let socket = null;
  let current = null;

  function bubble(role, text) {
    const node = el("div", undefined, {"class": `msg ${role}`});
    node.append(el("div", text, {"class": "text"}));
    messages.append(node);
    messages.scrollTop = messages.scrollHeight;
    return node;
  }

  function showSources(node, sources) {
    if (!sources || !sources.length) return;
    const list = el("div", "Sources: " + sources.map((s) => s.title).join(", "), {"class": "sources"});
    node.append(list);
  }

  function streaming(on) { sendButton.disabled = on; stopButton.disabled = !on; }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/chat/`);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "start") {
        conversationId = frame.conversation_id;
        current = bubble("assistant", "");
        current.dataset.messageId = frame.message_id;
      } else if (frame.type === "token") {
        current.querySelector(".text").textContent += frame.token;
        messages.scrollTop = messages.scrollHeight;
      } else if (frame.type === "done") {
        showSources(current, frame.sources);
        streaming(false);
        loadConversations();
      } else if (frame.type === "error") {
        errorBox.textContent = frame.error.message;
        streaming(false);
      }
    };
    socket.onclose = () => { streaming(false); socket = null; };
    return new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = () => reject(new Error("Could not connect to the chat server.")); });
  }

  async function send(text) {
    errorBox.textContent = "";
    if (!socket || socket.readyState !== WebSocket.OPEN) await connect();
    bubble("user", text);
    streaming(true);
    socket.send(JSON.stringify(conversationId ? {message: text, conversation_id: conversationId} : {message: text}));
  }

  async function open(conversation) {
    const detail = await api(`/api/conversations/${conversation.id}/`);
    conversationId = conversation.id;
    messages.replaceChildren();
    detail.messages.forEach((m) => { const node = bubble(m.role, m.content); if (m.role === "assistant") showSources(node, m.sources); });
  }

  async function loadConversations() {
    const page = await api("/api/conversations/");
    document.getElementById("conversations").replaceChildren(...page.results.map((c) => {
      const item = el("li"); const link = el("a", c.title || `Conversation ${c.id}`, {href: "#"});
      link.onclick = (event) => { event.preventDefault(); open(c); };
      item.append(link); return item;
    }));
  }

  document.getElementById("chat").addEventListener("submit", (event) => {
    event.preventDefault();
    const box = document.getElementById("message");
    const text = box.value.trim();
    if (!text) return;
    box.value = "";
    send(text).catch((error) => { errorBox.textContent = error.message; streaming(false); });
  });
  stopButton.addEventListener("click", () => { if (socket) socket.send(JSON.stringify({type: "cancel"})); streaming(false); });
  document.getElementById("new-conversation").addEventListener("click", () => { conversationId = null; messages.replaceChildren(); });
  loadConversations();
}

chatPage();
