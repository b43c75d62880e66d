"""How uvicorn serves Strata, shared by ``manage.py up``, the test server and (as CLI flags) the image.

``proxy_headers`` is off: nothing stands in front of these servers, so the socket peer is the
client (core.platform.client). Behind deploy/'s nginx the Procfile turns uvicorn's proxy headers on
for the proxy's address only (FORWARDED_ALLOW_IPS).

``ws_per_message_deflate`` is off: chat frames are a few dozen bytes each, so compressing them
saved nothing and cost a fifth of the event loop's time with 200 chats at once (and a zlib
context per socket). ``ws_max_size``: a chat frame holds at most CHAT_MAX_MESSAGE_CHARS.

``http`` is uvicorn's httptools protocol with the limits it lacks (``HttpProtocol``): reached
directly, it let a client hold a connection open for ever with a request head that never ends
(16,400 such connections were held in one test) or grow one header without bound. The body's size
is limited by the app (config.request_limits). The equivalent command line:

    uvicorn config.asgi:application --http config.serving:HttpProtocol --ws websockets-sansio
        --ws-per-message-deflate false --ws-max-size 1048576 --timeout-keep-alive 5 --no-proxy-headers
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A request's line and headers must arrive within this time from the connection (or from the
# request's first byte, on a kept-alive connection)...
HEAD_TIMEOUT_SECONDS = 10
# ...and fit in this many bytes (nginx's default large_client_header_buffers hold 4 x 8 KB).
MAX_HEAD_BYTES = 32 * 1024

UVICORN_OPTIONS: dict[str, Any] = {
    "http": "config.serving:HttpProtocol",
    "ws": "websockets-sansio",
    "ws_per_message_deflate": False,
    "ws_max_size": 1024 * 1024,
    "timeout_keep_alive": 5,
    "proxy_headers": False,
}

_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\nconnection: close\r\n\r\n"
    b"Request header fields too large.\n"
)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size limit on each request's head.

    Between the connection (or a request's first byte) and the end of its headers, a timer runs and
    the bytes received are counted: the connection is closed when the timer fires, and answered 431
    then closed when the count passes ``MAX_HEAD_BYTES``. Once the headers are complete neither
    applies: a body, a long answer (SSE) or a WebSocket has its own limits."""

    head_timer: asyncio.TimerHandle | None = None
    head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_begins()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_ends()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if self.head_timer is not None:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.head_timer is not None and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._head_ends()
            self.transport.write(_HEAD_TOO_LARGE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_timer is None:  # the next request on a kept-alive connection
            self._head_begins()

    def on_headers_complete(self) -> None:
        self._head_ends()
        super().on_headers_complete()

    def _head_begins(self) -> None:
        self.head_bytes = 0
        self.head_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _head_ends(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
