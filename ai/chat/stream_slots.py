"""Concurrent answers per user: at most CHAT_MAX_STREAMS_PER_USER, shared by every process through
the cache, and never held by a stream that died.

A user has that many slot keys; a stream takes a free one (an atomic ``add``) with a short TTL and
refreshes it on a heartbeat of its own while it runs (ai.chat.services), tokens or not, so a slow
upstream keeps its slot. A process that crashes mid-answer stops refreshing, so its slot frees
itself within CHAT_STREAM_SLOT_TTL_SECONDS.
"""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.core.cache import cache

from core.platform.exceptions import ApplicationError

# A slot frees when one of the user's answers ends; a few seconds is a fair first guess.
STREAM_RETRY_AFTER_SECONDS = 5


class StreamSlot:
    def __init__(self, *, schema_name: str, user_id: int) -> None:
        self._prefix = f"strata:stream-slot:{schema_name}:{user_id}"
        self._token = secrets.token_hex(8)
        self.key: str | None = None
        self._refreshed = 0.0

    def acquire(self) -> None:
        """Take a free slot or raise 429 ``too_many_streams``."""
        ttl = settings.CHAT_STREAM_SLOT_TTL_SECONDS
        for index in range(settings.CHAT_MAX_STREAMS_PER_USER):
            key = f"{self._prefix}:{index}"
            if cache.add(key, self._token, timeout=ttl):
                self.key = key
                self._refreshed = time.monotonic()
                return
        raise ApplicationError(
            f"You already have {settings.CHAT_MAX_STREAMS_PER_USER} answers streaming; wait for one to finish.",
            code="too_many_streams",
            status=429,
            extra={"retry_after": STREAM_RETRY_AFTER_SECONDS},
        )

    def refresh(self) -> None:
        """Keep the slot while the answer runs (at most one cache call per third of the TTL)."""
        ttl = settings.CHAT_STREAM_SLOT_TTL_SECONDS
        if self.key is not None and time.monotonic() - self._refreshed > ttl / 3:
            cache.touch(self.key, ttl)
            self._refreshed = time.monotonic()

    def release(self) -> None:
        if self.key is not None:
            key, self.key = self.key, None
            if cache.get(key) == self._token:  # expired and taken by another stream meanwhile: not ours
                cache.delete(key)
