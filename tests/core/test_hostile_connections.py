"""Hostile clients of the real server (uvicorn in a thread, tests/live_server.py): a chat frame of JSON
nested thousands deep, request bodies past the limit, request heads that never end or never stop."""

from __future__ import annotations

import json
import select
import socket
import time

import pytest

from config import serving
from tests.ai.chat_client import ask, receive, ws_connect
from tests.processes import procfile

# django_db: makes pytest-django create the test database; the live server commits on its own connections.
pytestmark = pytest.mark.django_db

MiB = 1024 * 1024


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- WebSocket frames ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("frame", [nested(5_000), nested(100_000), '{"message": ' + nested(50_000) + "}"])
async def test_a_chat_frame_nested_thousands_deep_gets_an_error_frame_and_the_socket_goes_on(
    live_worlds, asgi_server, fake_anthropic, frame
):
    async with await ws_connect(asgi_server, "acme", token=live_worlds["acme"].member_token) as ws:
        await ws.send(frame)
        error = await receive(ws)
        frames = await ask(ws, "Still there?")

    assert error["type"] == "error" and error["error"]["code"] == "bad_request"
    assert frames[-1]["type"] == "done"


# --- Request bodies ------------------------------------------------------------------------------


def raw_connection(server) -> socket.socket:  # noqa: ANN001
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """What the server sent until it closed the connection (or a reset), within ``timeout``."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return received


def head(server, subdomain: str, token: str, *lines: str) -> bytes:  # noqa: ANN001
    return "\r\n".join(
        [
            "POST /api/documents/ HTTP/1.1",
            f"Host: {subdomain}.localhost:{server.port}",
            f"Authorization: Token {token}",
            "Content-Type: application/json",
            *lines,
            "",
            "",
        ]
    ).encode()


def test_a_chunked_body_past_the_limit_is_refused_with_413_while_it_arrives(live_worlds, asgi_server, settings):
    settings.REQUEST_MAX_BODY_BYTES = MiB
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
    sent = 0
    answer = b""
    with raw_connection(asgi_server) as sock:
        sock.sendall(head(asgi_server, "acme", live_worlds["acme"].owner_token, "Transfer-Encoding: chunked"))
        deadline = time.monotonic() + 30
        # Up to 300 MB, as in the report, but stop as soon as the server answers.
        while sent < 300 * MiB and time.monotonic() < deadline:
            if select.select([sock], [], [], 0)[0]:
                answer = read_response(sock)
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                answer = read_response(sock)
                break
            sent += len(chunk)

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "payload_too_large"
    # The limit, plus what the sockets' buffers took in before the answer came back.
    assert sent < 32 * MiB


def test_a_declared_length_past_the_limit_is_refused_before_the_body_is_sent(live_worlds, asgi_server, settings):
    settings.REQUEST_MAX_BODY_BYTES = MiB
    with raw_connection(asgi_server) as sock:
        sock.sendall(head(asgi_server, "acme", live_worlds["acme"].owner_token, f"Content-Length: {300 * MiB}"))
        answer = read_response(sock)

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"payload_too_large" in answer


def test_a_body_within_the_limit_is_served(live_worlds, asgi_server, settings):
    settings.REQUEST_MAX_BODY_BYTES = MiB
    body = json.dumps({"title": "Within", "content": "word " * 100_000}).encode()
    with raw_connection(asgi_server) as sock:
        sock.sendall(head(asgi_server, "acme", live_worlds["acme"].owner_token, "Transfer-Encoding: chunked"))
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        answer = sock.recv(65536)

    assert not answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 2")


# --- Request heads -------------------------------------------------------------------------------


@pytest.fixture
def short_head_timeout(monkeypatch) -> float:  # noqa: ANN001
    monkeypatch.setattr(serving, "HEAD_TIMEOUT_SECONDS", 0.5, raising=False)
    return 0.5


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: "])
def test_a_request_head_that_never_ends_is_closed_after_the_timeout(asgi_server, short_head_timeout, sent):
    with raw_connection(asgi_server) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        answer = read_response(sock, timeout=10)
        waited = time.monotonic() - started

    assert answer == b""
    assert waited < 5


def test_a_kept_alive_connection_serves_its_requests_and_then_times_out(asgi_server, short_head_timeout):
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with raw_connection(asgi_server) as sock:
        sock.sendall(request)
        first = sock.recv(65536)
        sock.sendall(request[:20])  # the next request's head begins, then stops
        started = time.monotonic()
        rest = read_response(sock, timeout=10)

    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest == b""
    assert time.monotonic() - started < 5


def test_a_request_head_larger_than_the_limit_is_a_431(asgi_server):
    with raw_connection(asgi_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MB of one header, never ended
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(sock)

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_the_web_process_runs_uvicorn_with_the_options_up_and_the_tests_use():
    web = procfile()["web"]

    for name, value in serving.UVICORN_OPTIONS.items():
        if name == "proxy_headers":  # on behind deploy/'s proxy, for its address only
            continue
        flag = "--" + name.replace("_", "-")
        assert flag in web, flag
        assert web[web.index(flag) + 1] == (str(value).lower() if isinstance(value, bool) else str(value))
