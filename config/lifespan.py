"""ASGI lifespan: start warming up when a server process starts (the language model's SDK, then
the embedding model), in the background, so the process answers liveness at once and reports
ready (``/readyz``) when warm; at shutdown, let the chat answers in flight finish or save them as
interrupted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ai.chat.answers import chat_answers_drain
from ai.embedding.embedders import embedder_warm
from ai.llm import llm_warm

logger = logging.getLogger(__name__)


def warm_up() -> None:
    """What a web process loads before it reports ready: readiness follows the embedder's warmth,
    so the provider comes first. A provider that cannot be made is logged; chats then report it."""
    try:
        llm_warm()
    except Exception:
        logger.exception("the language model provider could not be made while warming up")
    embedder_warm()


class Lifespan:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        warming: asyncio.Future[None] | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                warming = asyncio.get_running_loop().run_in_executor(None, warm_up)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if warming is not None and not warming.done():
                    warming.cancel()
                await chat_answers_drain()  # answers in flight finish here or are saved as interrupted
                await send({"type": "lifespan.shutdown.complete"})
                return
