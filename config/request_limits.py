"""The request body's size, enforced while it arrives: an ASGI middleware in front of Django."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from core.platform.api import error_body
from core.platform.validators import ascii_integer


class RequestBodyLimit:
    """Refuses a request body larger than ``REQUEST_MAX_BODY_BYTES`` with 413 (the API's JSON
    error shape) and closes the connection, counting as the body arrives.

    Django's ASGI handler reads the whole body into a temporary file before any view or upload
    limit sees it, and a chunked body declares no length: without this, one client could make a
    web process spool gigabytes to disk. A declared ``Content-Length`` past the limit is refused
    before a byte of the body is read."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit = settings.REQUEST_MAX_BODY_BYTES
        if _declared_length(scope) > limit:
            await _refuse(send, limit)
            return
        received = 0
        too_large = responded = False

        async def receive_counting() -> dict[str, Any]:
            nonlocal received, too_large
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # What Django does when the client goes away: it stops reading, drops the
                    # temporary file and returns; the 413 is sent below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def send_noting(message: dict[str, Any]) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, receive_counting, send_noting)
        if too_large and not responded:
            await _refuse(send, limit)


def _declared_length(scope: dict[str, Any]) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return ascii_integer(value.decode("latin-1")) or 0  # else the count below still applies
    return 0


async def _refuse(send: Any, limit: int) -> None:
    body = json.dumps(error_body("payload_too_large", f"The request body may be at most {limit:,} bytes.")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # Closed after the answer: the rest of the body is never read.
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
