"""ASGI lifespan: start warming the embedding model when a server process starts, in the
background, so the process answers liveness at once and reports ready (``/readyz``) when warm;
at shutdown, let the chat answers in flight finish or save them as interrupted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ai.chat.answers import chat_answers_drain
from ai.embedding.embedders import embedder_warm

logger = logging.getLogger(__name__)


class Lifespan:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        warming: asyncio.Future[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                warming = asyncio.get_running_loop().run_in_executor(None, embedder_warm)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if warming is not None and not warming.done():
                    warming.cancel()
                await chat_answers_drain()  # answers in flight finish here or are saved as interrupted
                await send({"type": "lifespan.shutdown.complete"})
                return
