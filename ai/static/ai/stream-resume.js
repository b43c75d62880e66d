// A chat WebSocket that survives a dropped connection and a page reload.
//
// StrataResumableSocket looks like a WebSocket to the page (onopen, onmessage, onclose, onerror,
// send, readyState) and speaks Strata's resume protocol underneath: every answer frame carries
// "seq"; the answer in flight ({messageId, conversationId, seq}) is kept in sessionStorage (per
// tab and per tenant host); when the socket drops mid-answer it reconnects with backoff and sends
// {"type": "resume", "message_id", "after": <last seq seen>}, so the page gets the missed frames
// once each. After a reload, a new socket replays the pending answer from its start (the page
// has lost what it showed); so does one given an answer to follow (a page that shows an answer
// still unsettled, which this tab has no record of). The page's onclose is called only when
// nothing was in flight, or when the server refused the connection (close code 4403: access
// ended), with the close event; its onresumerefused when the answer to replay has no log left
// (the saved message is then the answer).
(() => {
  const STORAGE_KEY = "strata.chat.answer";
  const RETRY_MS = [200, 500, 1000, 2000, 4000, 8000];
  const REFUSED = 4403; // the server closed the socket: its tenant, membership or credential is gone

  function loadPending() {
    try { return JSON.parse(sessionStorage.getItem(STORAGE_KEY)); } catch (error) { return null; }
  }

  function savePending(answer) {
    if (answer) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(answer));
    else sessionStorage.removeItem(STORAGE_KEY);
  }

  class StrataResumableSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSED = 3;

    // The answer this tab was streaming when the page went away, if any: {messageId, conversationId, seq}.
    static pending() { return loadPending(); }

    // follow: an answer to replay from its start, {messageId, conversationId}, in place of the pending one.
    constructor(url, follow = null) {
      this.url = url;
      this.readyState = StrataResumableSocket.CONNECTING;
      this.onopen = this.onmessage = this.onclose = this.onerror = this.onresumerefused = null;
      this.answer = follow ? {...follow} : loadPending();
      if (this.answer) this.answer.seq = 0; // a reload: replay the whole answer
      this.resuming = false;
      this.queue = [];
      this.attempts = 0;
      this.opened = false;
      this.connect();
    }

    connect() {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = () => {
        this.attempts = 0;
        this.readyState = StrataResumableSocket.OPEN;
        if (this.answer) this.resume();
        this.queue.splice(0).forEach((data) => ws.send(data));
        if (!this.opened) { this.opened = true; if (this.onopen) this.onopen(); }
      };
      ws.onmessage = (event) => this.receive(event);
      ws.onclose = (event) => this.dropped(ws, event);
    }

    resume() {
      this.resuming = true;
      this.ws.send(JSON.stringify({type: "resume", message_id: this.answer.messageId, after: this.answer.seq}));
    }

    receive(event) {
      const frame = JSON.parse(event.data);
      if (frame.seq === undefined) {
        // A refusal. One of our resume: the answer's log expired, the saved message stands.
        if (this.resuming && frame.type === "error") {
          this.resuming = false;
          this.answer = null;
          savePending(null);
          if (frame.error && frame.error.code === "not_found") {
            if (this.onresumerefused) this.onresumerefused();
            return;
          }
        }
      } else {
        this.resuming = false;
        if (frame.type === "start") {
          if (this.answer && this.answer.messageId === frame.message_id && frame.seq <= this.answer.seq) return;
          this.answer = {messageId: frame.message_id, conversationId: frame.conversation_id, seq: 0};
        }
        if (!this.answer || frame.seq <= this.answer.seq) return; // seen already
        this.answer.seq = frame.seq;
        if (frame.type === "done" || frame.type === "error") this.answer = null;
        savePending(this.answer);
      }
      if (this.onmessage) this.onmessage(event);
    }

    dropped(ws, event) {
      if (ws !== this.ws) return;
      const refused = event && event.code === REFUSED;
      if (refused) { this.answer = null; savePending(null); } // no point coming back: access has ended
      if (this.answer && this.readyState !== StrataResumableSocket.CLOSED) {
        // Mid-answer: keep looking open to the page, reconnect and resume.
        const delay = RETRY_MS[Math.min(this.attempts, RETRY_MS.length - 1)];
        this.attempts += 1;
        setTimeout(() => this.connect(), delay);
        return;
      }
      const opened = this.opened;
      this.readyState = StrataResumableSocket.CLOSED;
      if (!opened && this.onerror) this.onerror(new Event("error"));
      if (this.onclose) this.onclose(event);
    }

    send(data) {
      const payload = JSON.parse(data);
      if (payload.type === "cancel") { this.answer = null; savePending(null); }
      if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
      else this.queue.push(data);
    }

    close() {
      this.readyState = StrataResumableSocket.CLOSED;
      this.ws.close();
    }
  }

  window.StrataResumableSocket = StrataResumableSocket;
})();
