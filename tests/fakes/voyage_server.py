"""A local fake of Voyage AI's embeddings endpoint (POST /v1/embeddings) for tests, spoken at the wire level."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.threaded_server import ThreadedFake

DEFAULT_API_KEY = "pa-test-voyage-key"
# What the real API accepts for output_dimension on its Matryoshka models; anything else is a 400.
OUTPUT_DIMENSIONS = (256, 512, 1024, 2048)
DEFAULT_DIMENSIONS = 1024
MAX_INPUTS = 1000

ERROR_DETAILS = {
    400: "Invalid request.",
    401: "Provided API key is invalid.",
    403: "Forbidden.",
    429: "You have exceeded your rate limit. Please retry after a short wait.",
    500: "Internal server error.",
    502: "Bad gateway.",
    503: "The service is temporarily unavailable.",
    504: "Gateway timeout.",
}

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class RecordedRequest:
    """One request as the fake saw it: path, lower-cased headers and the parsed JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector: signed, hashed bag of lower-cased words, so shared words mean similar vectors."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if not norm:
        vector[0] = 1.0
        return vector
    return [value / norm for value in vector]


def count_tokens(text: str) -> int:
    return max(1, len(_WORD.findall(text))) if text else 0


class FakeVoyage(ThreadedFake):
    """``with FakeVoyage() as voyage:`` serves Voyage's embeddings API on ``voyage.base_url``.

    ``fail_next`` holds HTTP statuses to answer the next requests with, one each, in order;
    ``requests`` records every request that reached the server (failed ones included);
    ``latency`` (seconds) is how long each answer takes, as a hosted model's would.
    """

    name = "fake-voyage"
    poll_interval = 0.05

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self.fail_next: list[int] = []
        self.requests: list[RecordedRequest] = []
        self.latency = 0.0
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What to give ``voyageai.Client(base_url=...)``: the SDK appends ``/embeddings``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _server_make(self) -> _Server:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        return server

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _queued_failure(self) -> int | None:
        with self._lock:
            return self.fail_next.pop(0) if self.fail_next else None

    def respond(self, request: RecordedRequest) -> tuple[int, dict[str, Any]]:
        """Record ``request`` and return the status and JSON body the real API would send."""
        self.record(request)
        # Authentication comes first, as upstream: a queued failure is kept for an authorised call.
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"detail": ERROR_DETAILS[401]}
        forced = self._queued_failure()
        if forced is not None:
            return forced, {"detail": ERROR_DETAILS.get(forced, "Error.")}
        if request.path != "/v1/embeddings":
            return 404, {"detail": "Not Found"}
        problem = _validate(request.body)
        if problem:
            return 400, {"detail": problem}
        return 200, _embeddings_response(request.body)


def _validate(body: dict[str, Any]) -> str | None:
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(text, str) for text in texts):
        return "Input must be a non-empty string or list of strings."
    if len(texts) > MAX_INPUTS:
        return f"The input list has {len(texts)} items; the maximum is {MAX_INPUTS}."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "Model is required."
    if body.get("input_type") not in (None, "query", "document"):
        return "input_type must be null, 'query' or 'document'."
    dimension = body.get("output_dimension")
    if dimension is not None and dimension not in OUTPUT_DIMENSIONS:
        return (
            f"Value '{dimension}' supplied for argument 'output_dimension' is not valid. "
            f"Accepted values: {list(OUTPUT_DIMENSIONS)}."
        )
    if body.get("encoding_format") not in (None, "base64"):
        return "encoding_format must be null or 'base64'."
    if body.get("output_dtype") not in (None, "float"):
        return "The fake only serves float embeddings."
    return None


def _embeddings_response(body: dict[str, Any]) -> dict[str, Any]:
    texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
    dimensions = body.get("output_dimension") or DEFAULT_DIMENSIONS
    data = []
    for index, text in enumerate(texts):
        vector = fake_embedding(text, dimensions)
        embedding: list[float] | str = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "embedding": embedding, "index": index})
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"total_tokens": sum(count_tokens(text) for text in texts)},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The SDK keeps connections alive; waiting for those handler threads would hang stop().
    block_on_close = False
    fake: FakeVoyage


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # Idle keep-alive connections give up instead of pinning a thread forever.
    timeout = 10

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            self.server.fake.record(RecordedRequest(self.path, headers))
            self._send(400, {"detail": "Request body is not valid JSON."})
            return
        if not isinstance(body, dict):
            body = {}
        status, payload = self.server.fake.respond(RecordedRequest(self.path, headers, body))
        if self.server.fake.latency:
            time.sleep(self.server.fake.latency)  # the upstream at work: a wait, not our CPU
        self._send(status, payload)

    def do_GET(self) -> None:
        self._send(405, {"detail": "Method Not Allowed"})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        encoded = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        try:
            self.wfile.write(encoded)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a worker killed mid-request): nobody to answer

    def log_message(self, format: str, *args: Any) -> None:
        pass
