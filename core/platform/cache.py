"""The shared cache (Redis with REDIS_URL), degrading to this process's memory while Redis is down.

The cache holds throttles, lockout counters, rate windows and concurrency slots: limits, not data.
A Redis outage must not fail every login, answer and handshake (DESIGN.md, "Fair shares"): each
call that cannot reach Redis is answered from a local cache instead, so every limit still holds
per process, and the shared view comes back with Redis, without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# How often (seconds) an unreachable Redis is logged, not on every call.
_WARN_EVERY = 30.0


class DegradingRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._local = LocMemCache(f"strata-degraded-{id(self)}", {"OPTIONS": {"MAX_ENTRIES": 100_000}})
        self._warned = 0.0

    def _degraded(self, name: str, exc: Exception) -> LocMemCache:
        now = time.monotonic()
        if now - self._warned > _WARN_EVERY:
            self._warned = now
            logger.warning("Redis unreachable (%s): limits fall back to this process until it returns", exc)
        return self._local


def _degrading(name: str) -> Callable[..., Any]:
    shared = getattr(RedisCache, name)

    def method(self: DegradingRedisCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return shared(self, *args, **kwargs)
        except RedisError as exc:
            return getattr(self._degraded(name, exc), name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name in (
    "add",
    "get",
    "set",
    "touch",
    "delete",
    "get_many",
    "has_key",
    "incr",
    "set_many",
    "delete_many",
    "clear",
):
    setattr(DegradingRedisCache, _name, _degrading(_name))
