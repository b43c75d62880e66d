"""A WebSocket chat client for tests: connects to a tenant host of the live server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


async def ws_connect(
    server: Any, subdomain: str, *, token: str | None = None, cookie: str | None = None, origin: str | None = None
) -> ClientConnection:
    headers = {}
    if token:
        headers["Authorization"] = f"Token {token}"
    if cookie:
        headers["Cookie"] = f"sessionid={cookie}"
    return await websockets.connect(
        f"ws://{subdomain}.localhost:{server.port}/ws/chat/",
        additional_headers=headers,
        origin=origin,
        host="127.0.0.1",
        port=server.port,
        proxy=None,
        open_timeout=10,
        max_queue=None,
    )


async def receive(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def ask(
    ws: ClientConnection, message: str, conversation_id: int | None = None, timeout: float = 20
) -> list[dict[str, Any]]:
    """Send a message and collect frames up to done/error."""
    payload: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        payload["conversation_id"] = conversation_id
    await ws.send(json.dumps(payload))
    return await frames_until_end(ws, timeout)


async def frames_until_end(ws: ClientConnection, timeout: float = 20) -> list[dict[str, Any]]:
    """The frames the socket sends up to and with the next done or error."""
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] not in ("done", "error"):
        frames.append(await receive(ws, timeout))
    return frames


def answer_text(frames: list[dict[str, Any]]) -> str:
    return "".join(frame["token"] for frame in frames if frame["type"] == "token")
