// Strata's tenant pages: plain browser JavaScript over the same API and WebSocket any client uses.
const Strata = (() => {
  const csrf = () => (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";

  async function api(path, options = {}) {
    const headers = {"X-CSRFToken": csrf(), ...(options.headers || {})};
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(options.json);
    }
    const response = await fetch(path, {credentials: "same-origin", ...options, headers});
    const body = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : `Request failed (${response.status})`;
      throw new Error(message);
    }
    return body;
  }

  const el = (tag, text, attrs = {}) => {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  };

  function documentsPage() {
    const list = document.getElementById("documents");
    const status = document.getElementById("upload-status");
    let pollTimer = null;

    async function refresh() {
      const page = await api("/api/documents/");
      list.replaceChildren(...page.results.map((doc) => {
        const row = el("tr", undefined, {"data-id": doc.id});
        row.append(el("td", doc.title), el("td", doc.status + (doc.error ? `: ${doc.error}` : ""), {"class": "doc-status"}),
          el("td", String(doc.chunk_count)), el("td", new Date(doc.created).toLocaleString()));
        const remove = el("button", "Delete", {type: "button"});
        remove.onclick = async () => { await api(`/api/documents/${doc.id}/`, {method: "DELETE"}); refresh(); };
        const cell = el("td"); cell.append(remove); row.append(cell);
        return row;
      }));
      clearTimeout(pollTimer);
      if (page.results.some((doc) => doc.status === "pending")) pollTimer = setTimeout(refresh, 1000);
      else if (status.textContent.endsWith("indexing…")) status.textContent = status.textContent.replace("indexing…", "ready to search.");
    }

    document.getElementById("upload").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const data = new FormData(form);
      if (!data.get("file") || !data.get("file").size) data.delete("file");
      status.className = ""; status.textContent = "Uploading…";
      try {
        const doc = await api("/api/documents/", {method: "POST", body: data});
        status.textContent = `Added “${doc.title}”; indexing…`;
        form.reset();
        refresh();
      } catch (error) { status.className = "error"; status.textContent = error.message; }
    });

    document.getElementById("search").addEventListener("submit", async (event) => {
      event.preventDefault();
      const results = document.getElementById("results");
      try {
        const body = await api("/api/search/", {method: "POST", json: {query: document.getElementById("query").value, k: 5}});
        results.replaceChildren(...body.results.map((hit) => {
          const item = el("li");
          item.append(el("strong", hit.title), el("span", ` (distance ${hit.distance.toFixed(3)})`, {"class": "muted"}), el("p", hit.text));
          return item;
        }));
        if (!body.results.length) results.replaceChildren(el("li", "No matching passages."));
      } catch (error) { results.replaceChildren(el("li", error.message, {"class": "error"})); }
    });
    refresh();
  }

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
      socket = new StrataResumableSocket(`${scheme}://${location.host}/ws/chat/`); // stream-resume.js
      socket.onmessage = (event) => {
        const frame = JSON.parse(event.data);
        if (frame.type === "start") {
          conversationId = frame.conversation_id;
          streaming(true);
          // A resumed answer after a reload replaces the saved part shown for it.
          current = messages.querySelector(`.msg.assistant[data-message-id="${frame.message_id}"]`) || bubble("assistant", "");
          current.querySelector(".text").textContent = "";
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
      detail.messages.forEach((m) => { const node = bubble(m.role, m.content); node.dataset.messageId = m.id; if (m.role === "assistant") showSources(node, m.sources); });
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
    const pending = StrataResumableSocket.pending(); // an answer was streaming when this tab reloaded
    if (pending) open({id: pending.conversationId}).then(connect).catch((error) => { errorBox.textContent = error.message; });
  }

  async function usagePage() {
    const usage = await api("/api/usage/");
    document.getElementById("usage-summary").textContent =
      `${usage.used.toLocaleString()} of ${usage.included.toLocaleString()} tokens used (${usage.remaining.toLocaleString()} left) ` +
      `from ${usage.period_start} to ${usage.period_end}.`;
    document.getElementById("usage-features").replaceChildren(...Object.entries(usage.by_feature).map(([feature, row]) => {
      const tr = el("tr");
      tr.append(el("td", feature), el("td", String(row.tokens)), el("td", String(row.input_tokens)), el("td", String(row.output_tokens)));
      return tr;
    }));
  }

  return {documentsPage, chatPage, usagePage};
})();

// The page names itself on this script's tag: no inline script (the Content-Security-Policy forbids them).
(() => {
  const pages = {documents: Strata.documentsPage, chat: Strata.chatPage, usage: Strata.usagePage};
  const start = pages[document.currentScript && document.currentScript.dataset.page];
  if (start) start();
})();
