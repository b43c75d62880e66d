"""Concurrent answers per user: at most CHAT_MAX_STREAMS_PER_USER, shared by every process through
the cache, and never held by a stream that died.

A stream takes one of the user's places (core.platform.admission.ConcurrencySlot) with a short TTL
and refreshes it on a heartbeat of its own while it runs (ai.chat.services), tokens or not, so a
slow upstream keeps its place. A process that crashes mid-answer stops refreshing, so its place
frees itself within CHAT_STREAM_SLOT_TTL_SECONDS.
"""

from __future__ import annotations

from django.conf import settings

from core.platform.admission import ConcurrencySlot
from core.platform.exceptions import ApplicationError

# A slot frees when one of the user's answers ends; a few seconds is a fair first guess.
STREAM_RETRY_AFTER_SECONDS = 5


def stream_slot(*, schema_name: str, user_id: int) -> ConcurrencySlot:
    """One of the answers and summaries ``user_id`` may have streaming in the tenant at once."""
    limit = settings.CHAT_MAX_STREAMS_PER_USER

    def refusal() -> ApplicationError:
        return ApplicationError(
            f"You already have {limit} answers streaming; wait for one to finish.",
            code="too_many_streams",
            status=429,
            extra={"retry_after": STREAM_RETRY_AFTER_SECONDS},
        )

    return ConcurrencySlot(
        scope=f"stream:{schema_name}:{user_id}",
        limit=limit,
        ttl=settings.CHAT_STREAM_SLOT_TTL_SECONDS,
        refusal=refusal,
    )
