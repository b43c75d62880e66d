"""A local fake of the Anthropic Messages API (JSON and SSE streaming) for tests and benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

__all__ = [
    "DEFAULT_REPLY",
    "FakeAnthropic",
    "RecordedRequest",
    "error_body",
    "estimate_input_tokens",
    "split_tokens",
    "validate_body",
]

logger = logging.getLogger(__name__)

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
REASONS = {529: "Overloaded"}
MAX_HEADER_LINES = 100


class ClientGone(Exception):
    """The client closed its connection before the response was finished."""


class BadHTTPRequest(Exception):
    """The bytes on the connection are not an HTTP/1.1 request this fake understands."""


class RecordedRequest(dict[str, Any]):
    """A request body as parsed JSON, plus the path and the (lower-cased) headers it came with."""

    def __init__(self, body: dict[str, Any], *, path: str, headers: dict[str, str]) -> None:
        super().__init__(body)
        self.path = path
        self.headers = headers
        # What the fake charged for it, as the real API bills: the prompt once a message starts,
        # and one output token per text piece it delivered (whether or not the stream finished).
        self.charged = {"input_tokens": 0, "output_tokens": 0}


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

    The server runs on its own asyncio loop in a daemon thread, so one thread holds
    any number of concurrent streams. Switches are plain attributes read by each
    request as it runs, so a test may change them at any time; ``reset()`` puts
    back the values given to the constructor and clears the records.
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
        port: int = 0,
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
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # Live counts, which reset() leaves alone: what is open on the fake right now.
        self.open_connections = 0
        self.active_streams = 0
        self.reset()

    # Configuration and records

    def reset(self) -> None:
        """Restore every switch to its constructor value and forget what was recorded."""
        with self._changed:
            for name, value in self._defaults.items():
                setattr(self, name, value)
            self.fail_before_first_token: list[int] = []
            # Mid-stream faults, each after that many text deltas: an `error` event of this type
            # (the real API sends overloaded_error mostly), an event whose data is not JSON, or the
            # body ended cleanly without message_stop (as a proxy that gave up on the upstream does).
            self.error_mid_stream_after: int | None = None
            self.error_mid_stream_type = "overloaded_error"
            self.malformed_event_after: int | None = None
            self.cut_stream_after: int | None = None
            self.hang_before_response: float = 0.0
            self.requests: list[RecordedRequest] = []
            self.disconnects = 0
            self.completed_streams = 0
            self.max_active_streams = self.active_streams
            self._changed.notify_all()

    def wait_for_disconnect(self, timeout: float, count: int = 1) -> bool:
        """Block until at least ``count`` responses were abandoned by their client; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.disconnects >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self.requests) >= count, timeout)

    def wait_for_open_connections(self, at_most: int, timeout: float) -> bool:
        """Block until no more than ``at_most`` client connections are open; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.open_connections <= at_most, timeout)

    # Lifecycle

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeAnthropic:
        if self._server is not None:
            return self
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="fake-anthropic", daemon=True)
        self._thread.start()
        self._loop = loop
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, thread = self._loop, self._thread
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _listen(self) -> asyncio.Server:
        # A deep backlog: a benchmark opens hundreds of connections at once.
        return await asyncio.start_server(self._serve_connection, "127.0.0.1", self._port, backlog=2048)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    # Connections (all of this runs on the server's loop)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = cast("asyncio.Task[None]", asyncio.current_task())
        self._connections.add(task)
        self._count_connection(+1)
        try:
            await _Exchange.serve_all(self, reader, writer)
        except (ConnectionError, BadHTTPRequest, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections; asyncio would log a cancelled connection task as a failure.
            pass
        finally:
            self._connections.discard(task)
            self._count_connection(-1)
            writer.close()

    def _count_connection(self, change: int) -> None:
        with self._changed:
            self.open_connections += change
            self._changed.notify_all()

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


class _Exchange:
    """One request and its response on a keep-alive connection."""

    def __init__(self, fake: FakeAnthropic, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.fake = fake
        self.reader = reader
        self.writer = writer
        self.keep_alive = True
        # Finishes when the client hangs up: it sends nothing while it waits for the response.
        self._hangup: asyncio.Task[bytes] | None = None

    @classmethod
    async def serve_all(cls, fake: FakeAnthropic, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            exchange = cls(fake, reader, writer)
            if not await exchange.serve():
                return

    async def serve(self) -> bool:
        """Answer one request; False when the connection must close."""
        request_line = await self.reader.readline()
        if not request_line.strip():
            return False
        method, path, headers = await self._read_head(request_line)
        raw_body = await self._read_body(headers)
        hangup = self._hangup = asyncio.ensure_future(self.reader.read(1))
        try:
            await self._route(method, path, headers, raw_body)
        except ClientGone:
            self.fake._client_gone()
            return False
        finally:
            await self._retire(hangup)
        return self.keep_alive and headers.get("connection", "").lower() != "close"

    async def _retire(self, hangup: asyncio.Task[bytes]) -> None:
        """Finish the hang-up watcher before the next request is read from the same stream."""
        hangup.cancel()
        # wait(), unlike awaiting the task, leaves a cancellation of this task (stop()) to propagate.
        await asyncio.wait({hangup})
        if not hangup.cancelled() and (hangup.exception() is not None or hangup.result()):
            # A client that sent bytes early (pipelining) lost one to the watcher; start afresh.
            self.keep_alive = False

    async def _read_head(self, request_line: bytes) -> tuple[str, str, dict[str, str]]:
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            raise BadHTTPRequest(request_line)
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = (await self.reader.readline()).decode("latin-1")
            if line in ("\r\n", "\n", ""):
                return parts[0], parts[1], headers
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raise BadHTTPRequest("too many headers")

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        length_header = headers.get("content-length") or "0"
        if not length_header.isdigit():
            raise BadHTTPRequest(f"content-length: {length_header}")
        length = int(length_header)
        return await self.reader.readexactly(length) if length else b""

    async def _route(self, method: str, path: str, headers: dict[str, str], raw_body: bytes) -> None:
        if method != "POST" or path.split("?")[0] != "/v1/messages":
            await self._send_error(404, "not_found_error", f"Not found: {method} {path}")
            return
        body = _parse_json(raw_body)
        self.request = RecordedRequest(body if isinstance(body, dict) else {}, path=path, headers=headers)
        self.fake._record(self.request)
        await self._respond(body, headers)

    async def _respond(self, body: Any, headers: dict[str, str]) -> None:
        auth_problem = self._auth_problem(headers)
        if auth_problem is not None:
            await self._send_error(401, "authentication_error", auth_problem)
            return
        if "anthropic-version" not in headers:
            await self._send_error(400, "invalid_request_error", "anthropic-version: header is required")
            return
        problem = "There was an error parsing the body of your request" if body is None else validate_body(body)
        if problem is not None:
            await self._send_error(400, "invalid_request_error", problem)
            return
        await self._wait(self.fake.hang_before_response)
        status = self.fake._next_failure()
        if status is not None:
            await self._send_failure(status)
            return
        try:
            pieces, stop_reason = self._pieces(body)
        except Exception:
            # A broken reply_fn is the test's bug: answer like a failing upstream and show the traceback.
            logger.exception("FakeAnthropic reply_fn failed")
            await self._send_failure(500)
            return
        if body.get("stream") is True:
            await self._stream_message(body, pieces, stop_reason)
        else:
            message = self._message(body, pieces, stop_reason)
            self._charge(message["usage"]["input_tokens"], message["usage"]["output_tokens"])
            await self._send_json(200, message)

    def _charge(self, input_tokens: int = 0, output_tokens: int = 0) -> None:
        charged = self.request.charged
        charged["input_tokens"] += input_tokens
        charged["output_tokens"] += output_tokens

    def _auth_problem(self, headers: dict[str, str]) -> str | None:
        # The real API takes `x-api-key`; the installed SDK sends the key as a Bearer token instead.
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not key:
            return "x-api-key header is required"
        expected = self.fake.api_key
        if expected is not None and key != expected:
            return "invalid x-api-key"
        return None

    # Bodies

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

    async def _send_failure(self, status: int) -> None:
        error_type = ERROR_TYPES.get(status, "api_error")
        extra = {"retry-after": str(self.fake.retry_after_seconds)} if status == 429 else {}
        await self._send_error(status, error_type, ERROR_MESSAGES.get(error_type, error_type), extra)

    async def _send_error(
        self, status: int, error_type: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        await self._send_json(status, error_body(error_type, message), extra)

    async def _send_json(self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        headers = {"content-type": "application/json", "content-length": str(len(data)), **(extra or {})}
        await self._write(self._head(status, headers) + data)

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        reason = REASONS.get(status) or _reason(status)
        all_headers = {
            "request-id": _new_id("req"),
            "anthropic-organization-id": "fake-org",
            "server": "FakeAnthropic/1.0",
            **headers,
        }
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{name}: {value}" for name, value in all_headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # Streaming

    async def _stream_message(self, body: dict[str, Any], pieces: list[str], stop_reason: str) -> None:
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
        }
        await self._write(self._head(200, headers))
        self.fake._stream_started()
        completed = False
        try:
            completed = await self._stream_events(body, pieces, stop_reason)
        finally:
            self.fake._stream_ended(completed=completed)
        await self._write(b"0\r\n\r\n")
        # The real API ends a stream after an error event; the connection is not reused.
        self.keep_alive = completed

    async def _stream_events(self, body: dict[str, Any], pieces: list[str], stop_reason: str) -> bool:
        """Send the event sequence; False when it ended early (an error event, a fault)."""
        start = self._message(body, [], None) | {"content": [], "usage": self._usage(body, output_tokens=1)}
        await self._event("message_start", {"type": "message_start", "message": start})
        self._charge(input_tokens=start["usage"]["input_tokens"])
        empty_block = {"type": "text", "text": ""}
        await self._event(
            "content_block_start", {"type": "content_block_start", "index": 0, "content_block": empty_block}
        )
        await self._event("ping", {"type": "ping"})
        await self._wait(self.fake.first_token_delay)
        for sent, piece in enumerate(pieces):
            if sent:
                await self._wait(self.fake.token_delay)
            if self.fake.error_mid_stream_after == sent:
                error_type = self.fake.error_mid_stream_type
                await self._event("error", error_body(error_type, ERROR_MESSAGES.get(error_type, error_type)))
                return False
            if self.fake.malformed_event_after == sent:
                await self._raw_event(b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n')
                return False
            if self.fake.cut_stream_after == sent:
                return False
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            await self._event("content_block_delta", delta)
            self._charge(output_tokens=1)
        await self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        usage = {"output_tokens": max(len(pieces), 1)}
        await self._event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        await self._event("message_stop", {"type": "message_stop"})
        return True

    async def _event(self, name: str, data: dict[str, Any]) -> None:
        await self._raw_event(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    async def _raw_event(self, payload: bytes) -> None:
        await self._write(b"%x\r\n%s\r\n" % (len(payload), payload))

    # Socket

    def _check_client(self) -> None:
        if self._hangup is not None and self._hangup.done():
            raise ClientGone
        if self.writer.transport.is_closing():
            raise ClientGone

    async def _write(self, data: bytes) -> None:
        self._check_client()
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError as exc:
            raise ClientGone from exc

    async def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once (with ClientGone) when the client hangs up."""
        self._check_client()
        if seconds <= 0 or self._hangup is None:
            return
        await asyncio.wait({self._hangup}, timeout=seconds)
        self._check_client()


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def main() -> None:
    """Serve the fake in the foreground, e.g. as ANTHROPIC_BASE_URL for a local benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    args = parser.parse_args()
    fake = FakeAnthropic(
        reply=args.reply, token_delay=args.token_delay, first_token_delay=args.first_token_delay, port=args.port
    )
    with fake, contextlib.suppress(KeyboardInterrupt):
        print(f"Fake Anthropic API on {fake.base_url}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
