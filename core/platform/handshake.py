"""Refusing a WebSocket handshake the way the REST API refuses a request: an HTTP status with the
JSON error body and, when the error says when to come back, ``Retry-After`` (the ASGI denial
response). A server without that extension can only close before accepting (it answers 403)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from core.platform.exceptions import ApplicationError


async def handshake_refuse(
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    *,
    error: ApplicationError,
    close_code: int,
    headers: Iterable[tuple[bytes, bytes]] = (),
    connect_received: bool = False,
) -> None:
    """Answer the handshake of ``scope`` with ``error``. ``connect_received``: the app already read
    the ``websocket.connect`` message (it failed after reading it)."""
    if not connect_received and (await receive())["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": close_code})
        return
    answer = [(b"content-type", b"application/json"), *headers]
    if "retry_after" in error.extra:
        answer.append((b"retry-after", str(error.extra["retry_after"]).encode()))
    await send({"type": "websocket.http.response.start", "status": error.status, "headers": answer})
    await send({"type": "websocket.http.response.body", "body": json.dumps(error.as_dict()).encode()})
