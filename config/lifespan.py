"""ASGI lifespan: start warming up when a server process starts (the language model's SDK, then
the embedding model), in the background, so the process answers liveness at once and reports
ready (``/readyz``) when warm; at shutdown, let the chat answers in flight finish or save them as
interrupted."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ai.chat.answers import chat_answers_drain
from ai.embedding.embedders import embedder_warm
from ai.llm import llm_warm

logger = logging.getLogger(__name__)


# Seconds between attempts to load the embedding model after a failed one (a full or read-only
# disk, a file being replaced); the last repeats until the process stops.
WARM_RETRY_DELAYS = (1, 2, 5, 10, 30)


def warm_up(stopping: threading.Event) -> None:
    """What a web process loads before it reports ready: readiness follows the embedder's warmth,
    so the provider comes first. A provider that cannot be made is logged; chats then report it.
    An embedding model that cannot be loaded is logged at once and tried again until it loads (the
    process reports not ready meanwhile) or the process stops."""
    try:
        llm_warm()
    except Exception:
        logger.exception("the language model provider could not be made while warming up")
    delays = iter(WARM_RETRY_DELAYS)
    while not stopping.is_set():
        try:
            embedder_warm()
            return
        except Exception:
            delay = next(delays, WARM_RETRY_DELAYS[-1])
            logger.exception("the embedding model could not be loaded; trying again in %s s", delay)
            stopping.wait(delay)


class Lifespan:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        warming: asyncio.Future[None] | None = None
        stopping = threading.Event()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                warming = asyncio.get_running_loop().run_in_executor(None, warm_up, stopping)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stopping.set()
                if warming is not None and not warming.done():
                    warming.cancel()
                await chat_answers_drain()  # answers in flight finish here or are saved as interrupted
                await send({"type": "lifespan.shutdown.complete"})
                return
