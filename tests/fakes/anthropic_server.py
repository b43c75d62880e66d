"""A local fake of the Anthropic Messages API (JSON and SSE streaming) for tests and benchmarks."""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "Strata's fake Claude says hello from the test server."

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}
# How often a waiting handler looks at its socket and at the stop flag.
POLL_INTERVAL = 0.02


class ClientGone(Exception):
    """The client closed its connection before the response was finished."""


class ServerStopping(Exception):
    """``stop()`` was called while this response was still being written."""


class RecordedRequest(dict[str, Any]):
    """A request body as parsed JSON, plus the path and the (lower-cased) headers it came with."""

    def __init__(self, body: dict[str, Any], *, path: str, headers: dict[str, str]) -> None:
        super().__init__(body)
        self.path = path
        self.headers = headers


def split_tokens(text: str) -> list[str]:
    """Split on word boundaries, keeping the whitespace, so that ``"".join(pieces) == text``."""
    pieces = re.findall(r"\s*\S+\s*", text)
    return pieces or ([text] if text else [])


def request_text(body: dict[str, Any]) -> str:
    """All the prompt text of a request: system plus every message's text."""
    parts = [_content_text(body.get("system"))]
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            parts.append(_content_text(message.get("content")))
    return "\n".join(part for part in parts if part)


def estimate_input_tokens(body: dict[str, Any]) -> int:
    return len(request_text(body)) // 4 + 1


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            block["text"] for block in content if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""


def validate_body(body: Any) -> str | None:
    """The real API's wording for the first problem in a request body, or None when it is valid."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return f"{field}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    return _validate_messages(body["messages"])


def _validate_messages(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), (str, list)):
            return f"messages.{index}.content: Field required"
    return None


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _new_id("req")}


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class FakeAnthropic:
    """``POST /v1/messages`` on 127.0.0.1, with switches for latency, failures and cut streams.

    Switches are plain attributes, read by each request as it runs, so a test may
    change them at any time. ``reset()`` puts back the values given to the constructor.
    """

    def __init__(
        self,
        *,
        reply: str = DEFAULT_REPLY,
        reply_fn: Callable[[dict[str, Any]], str] | None = None,
        token_delay: float = 0.0,
        first_token_delay: float = 0.0,
        cache_read_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        api_key: str | None = None,
        retry_after_seconds: int = 1,
    ) -> None:
        self._defaults: dict[str, Any] = {
            "reply": reply,
            "reply_fn": reply_fn,
            "token_delay": token_delay,
            "first_token_delay": first_token_delay,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "api_key": api_key,
            "retry_after_seconds": retry_after_seconds,
        }
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # Configuration and records

    def reset(self) -> None:
        """Restore every switch to its constructor value and forget what was recorded."""
        with self._lock:
            for name, value in self._defaults.items():
                setattr(self, name, value)
            self.fail_before_first_token: list[int] = []
            self.error_mid_stream_after: int | None = None
            self.hang_before_response: float = 0.0
            self.requests: list[RecordedRequest] = []
            self.disconnects = 0
            self.completed_streams = 0
            self.active_streams = 0
            self.max_active_streams = 0
            self._changed.notify_all()

    def wait_for_disconnect(self, timeout: float, count: int = 1) -> bool:
        """Block until at least ``count`` clients have gone away mid-response; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.disconnects >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout)

    # Lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAnthropic:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        # Handlers that are sleeping or streaming see the flag and end their responses.
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Used by the request handler

    def _record(self, request: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()

    def _next_failure(self) -> int | None:
        with self._lock:
            return self.fail_before_first_token.pop(0) if self.fail_before_first_token else None

    def _reply_for(self, body: dict[str, Any]) -> str:
        reply_fn = self.reply_fn
        return reply_fn(body) if reply_fn is not None else self.reply

    def _stream_started(self) -> None:
        with self._lock:
            self.active_streams += 1
            self.max_active_streams = max(self.max_active_streams, self.active_streams)

    def _stream_ended(self, *, completed: bool) -> None:
        with self._changed:
            self.active_streams -= 1
            if completed:
                self.completed_streams += 1
            self._changed.notify_all()

    def _client_gone(self) -> None:
        with self._changed:
            self.disconnects += 1
            self._changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops SYNs when a benchmark opens hundreds of streams at once.
    request_queue_size = 1024
    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAnthropic/1.0"
    # Idle keep-alive connections from SDK pools end on their own after this long.
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Each SSE event is its own small write; Nagle would hold it back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def fake(self) -> FakeAnthropic:
        return self.server.fake

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self._read_body()
        self._send_error(404, "not_found_error", f"Not found: {self.path}")

    def do_POST(self) -> None:
        raw = self._read_body()
        if self.path.split("?")[0] != "/v1/messages":
            self._send_error(404, "not_found_error", f"Not found: {self.path}")
            return
        body = self._parse_json(raw)
        headers = {key.lower(): value for key, value in self.headers.items()}
        self.fake._record(RecordedRequest(body if isinstance(body, dict) else {}, path=self.path, headers=headers))
        try:
            self._respond(body, headers)
        except ClientGone:
            self.close_connection = True
            self.fake._client_gone()
        except ServerStopping:
            self.close_connection = True

    def _respond(self, body: Any, headers: dict[str, str]) -> None:
        auth_problem = self._auth_problem(headers)
        if auth_problem is not None:
            self._send_error(401, "authentication_error", auth_problem)
            return
        if "anthropic-version" not in headers:
            self._send_error(400, "invalid_request_error", "anthropic-version: header is required")
            return
        problem = "There was an error parsing the body of your request" if body is None else validate_body(body)
        if problem is not None:
            self._send_error(400, "invalid_request_error", problem)
            return
        self._wait(self.fake.hang_before_response)
        status = self.fake._next_failure()
        if status is not None:
            self._send_failure(status)
            return
        pieces, stop_reason = self._pieces(body)
        if body.get("stream") is True:
            self._stream_message(body, pieces, stop_reason)
        else:
            self._send_json(200, self._message(body, pieces, stop_reason))

    def _auth_problem(self, headers: dict[str, str]) -> str | None:
        # The real API takes `x-api-key`; this SDK release sends the key as a Bearer token.
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not key:
            return "x-api-key header is required"
        expected = self.fake.api_key
        if expected is not None and key != expected:
            return "invalid x-api-key"
        return None

    # Bodies

    def _read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _message(self, body: dict[str, Any], pieces: list[str], stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": _new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": "".join(pieces)}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": self._usage(body, output_tokens=max(len(pieces), 1)),
        }

    def _pieces(self, body: dict[str, Any]) -> tuple[list[str], str]:
        pieces = split_tokens(self.fake._reply_for(body))
        if len(pieces) > body["max_tokens"]:
            return pieces[: body["max_tokens"]], "max_tokens"
        return pieces, "end_turn"

    def _usage(self, body: dict[str, Any], *, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": estimate_input_tokens(body),
            "cache_creation_input_tokens": self.fake.cache_creation_input_tokens,
            "cache_read_input_tokens": self.fake.cache_read_input_tokens,
            "output_tokens": output_tokens,
        }

    # Plain responses

    def _send_failure(self, status: int) -> None:
        error_type = ERROR_TYPES.get(status, "api_error")
        extra = {"retry-after": str(self.fake.retry_after_seconds)} if status == 429 else {}
        self._send_error(status, error_type, ERROR_MESSAGES.get(error_type, error_type), extra)

    def _send_error(self, status: int, error_type: str, message: str, extra: dict[str, str] | None = None) -> None:
        self._send_json(status, error_body(error_type, message), extra)

    def _send_json(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self._common_headers(extra)
        self.end_headers()
        self._write(data)

    def _common_headers(self, extra: dict[str, str] | None = None) -> None:
        self.send_header("request-id", _new_id("req"))
        self.send_header("anthropic-organization-id", "fake-org")
        for name, value in (extra or {}).items():
            self.send_header(name, value)

    # Streaming

    def _stream_message(self, body: dict[str, Any], pieces: list[str], stop_reason: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self._common_headers()
        self.end_headers()
        self.fake._stream_started()
        completed = False
        try:
            completed = self._stream_events(body, pieces, stop_reason)
        finally:
            self.fake._stream_ended(completed=completed)
        self._write(b"0\r\n\r\n")
        if not completed:
            self.close_connection = True

    def _stream_events(self, body: dict[str, Any], pieces: list[str], stop_reason: str) -> bool:
        """Send the event sequence; False when it ended early with an error event."""
        start = self._message(body, [], None) | {"content": [], "usage": self._usage(body, output_tokens=1)}
        self._event("message_start", {"type": "message_start", "message": start})
        empty_block = {"type": "text", "text": ""}
        self._event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": empty_block})
        self._event("ping", {"type": "ping"})
        self._wait(self.fake.first_token_delay)
        for sent, piece in enumerate(pieces):
            if sent:
                self._wait(self.fake.token_delay)
            if self.fake.error_mid_stream_after == sent:
                self._event("error", error_body("overloaded_error", "Overloaded"))
                return False
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            self._event("content_block_delta", delta)
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        usage = {"output_tokens": max(len(pieces), 1)}
        self._event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        self._event("message_stop", {"type": "message_stop"})
        return True

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self._write(b"%x\r\n%s\r\n" % (len(payload), payload))

    # Socket

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise ClientGone from exc

    def _wait(self, seconds: float) -> None:
        """Sleep, but notice at once when the client hangs up or the server stops."""
        # poll(), not select(): select() fails on descriptors above 1024, which a benchmark reaches.
        poller = select.poll()
        poller.register(self.connection, select.POLLIN | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.fake._stopping.is_set():
                raise ServerStopping
            ready = poller.poll(min(remaining, POLL_INTERVAL) * 1000)
            # A client waiting for this response sends nothing, so readable means EOF or reset.
            if not ready:
                continue
            if self._peer_closed():
                raise ClientGone
            # Pipelined bytes are not ours to read; wait without spinning on them.
            time.sleep(min(remaining, POLL_INTERVAL))

    def _peer_closed(self) -> bool:
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True
