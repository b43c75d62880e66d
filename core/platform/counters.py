"""Fixed-window event counters in the shared cache (Redis with REDIS_URL): the one mechanism behind
the per-tenant AI rate limit, the invitation limit and the per-recipient mail cap."""

from __future__ import annotations

from django.core.cache import cache


def window_count(key: str, *, window_seconds: int, now: float) -> int:
    """Count one more event under ``key`` in the window of ``window_seconds`` that holds ``now``;
    the events counted in that window so far, this one included."""
    full_key = f"{key}:{int(now // window_seconds)}"
    timeout = window_seconds * 2  # outlives its window whatever the clocks of the processes say
    cache.add(full_key, 0, timeout=timeout)
    try:
        return cache.incr(full_key)
    except ValueError:  # evicted between add and incr
        cache.set(full_key, 1, timeout=timeout)
        return 1


def window_seconds_left(*, window_seconds: int, now: float) -> int:
    """Seconds until the window that holds ``now`` ends (a 429's Retry-After)."""
    return window_seconds - int(now % window_seconds)
