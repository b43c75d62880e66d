"""Limits on every WebSocket, applied before its consumer sees a frame: a frame rate per socket, a cap
on open sockets per person (or API key) per tenant, and an idle timeout (config/settings/sockets.py).

A frame past the socket's rate never reaches the consumer (whose every frame costs a database
round trip): it is answered with a ``rate_limited`` error frame carrying ``retry_after``, and a
socket that keeps sending regardless is closed (4429). A person's open sockets are counted across
processes through the cache: each socket holds one of SOCKET_MAX_PER_PERSON places (keys taken with
an atomic ``add``, with a TTL its process refreshes), so a crashed process's places free themselves.
When the cache (Redis) is unreachable the count falls back to this process's own rather than
refusing the handshake; places taken that way count against the cap once the cache is back. A
socket with no frame either way for SOCKET_IDLE_TIMEOUT_SECONDS is closed (4408): a streaming
answer sends frames, so only idle sockets are.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.platform.exceptions import ApplicationError
from core.platform.handshake import handshake_refuse

logger = logging.getLogger(__name__)

CLOSE_IDLE = 4408
CLOSE_FLOOD = 4429
# A refused frame after this long without one is a new burst, not the same flood.
FLOOD_PAUSE_SECONDS = 1.0
# A place frees when one of the person's sockets closes; a few seconds is a fair first guess.
SOCKETS_RETRY_AFTER_SECONDS = 10
# After the cache failed, the count stays in the process this long before the cache is tried again
# (a Redis that times out must not slow every handshake down).
CACHE_RETRY_SECONDS = 5.0

_cache_down_until = 0.0
# Per-process places, by person and tenant, taken while the cache is unreachable.
_local_places: collections.Counter[str] = collections.Counter()


@dataclass
class _Place:
    """One of a person's places on a tenant: a cache key (shared), or a count in this process."""

    prefix: str
    key: str | None
    token: str
    refreshed: float


def _places_prefix(scope: dict[str, Any]) -> str | None:
    tenant, user = scope.get("tenant"), scope.get("user")
    if settings.SOCKET_MAX_PER_PERSON <= 0:
        return None  # no cap
    if tenant is None or user is None or not user.is_authenticated:
        return None  # refused by the consumer anyway; nobody's place to count
    return f"strata:sockets:{tenant.schema_name}:{user.pk}"


def _shared_take(prefix: str, token: str, *, held_here: int) -> str | None:
    """Sync: take a free place in the cache (one read, then an atomic add per free place tried).
    ``held_here``: places this process counts on its own, taken while the cache was unreachable
    and still open; they count against the cap too."""
    keys = [f"{prefix}:{index}" for index in range(settings.SOCKET_MAX_PER_PERSON)]
    taken = cache.get_many(keys)
    if len(taken) + held_here >= settings.SOCKET_MAX_PER_PERSON:
        return None
    for key in keys:
        if key not in taken and cache.add(key, token, timeout=settings.SOCKET_SLOT_TTL_SECONDS):
            return key
    return None


def _shared_release(key: str, token: str) -> None:
    if cache.get(key) == token:  # expired and taken by another socket meanwhile: not ours
        cache.delete(key)


def _cache_failed() -> None:
    global _cache_down_until
    logger.warning("socket places: the cache is unreachable, counting in this process", exc_info=True)
    _cache_down_until = time.monotonic() + CACHE_RETRY_SECONDS


async def _place_take(prefix: str) -> _Place | None:
    """A place for one more socket of this person on this tenant, or None when they have them all."""
    token = secrets.token_hex(8)
    if time.monotonic() >= _cache_down_until:
        try:
            # In a thread: the cache may be Redis, which must not hold up the event loop.
            key = await asyncio.to_thread(_shared_take, prefix, token, held_here=_local_places[prefix])
        except Exception:
            _cache_failed()
        else:
            return None if key is None else _Place(prefix, key, token, time.monotonic())
    if _local_places[prefix] >= settings.SOCKET_MAX_PER_PERSON:
        return None
    _local_places[prefix] += 1
    return _Place(prefix, None, token, time.monotonic())


async def _place_refresh(place: _Place) -> None:
    if place.key is None or time.monotonic() - place.refreshed < settings.SOCKET_SLOT_TTL_SECONDS / 3:
        return
    place.refreshed = time.monotonic()
    try:
        await asyncio.to_thread(cache.touch, place.key, settings.SOCKET_SLOT_TTL_SECONDS)
    except Exception:
        logger.warning("socket places: could not refresh %s", place.key, exc_info=True)


async def _place_release(place: _Place) -> None:
    if place.key is None:
        _local_places[place.prefix] -= 1
        if _local_places[place.prefix] <= 0:
            del _local_places[place.prefix]
        return
    try:
        await asyncio.to_thread(_shared_release, place.key, place.token)
    except Exception:  # it expires with its TTL
        logger.warning("socket places: could not release %s", place.key, exc_info=True)


class SocketLimitsMiddleware:
    """Applies the socket limits (module docstring) to every WebSocket of ``app``; needs the
    ``tenant`` and ``user`` that tenants.sockets.TenantAuthMiddleware put in the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        prefix = _places_prefix(scope)
        place = await _place_take(prefix) if prefix is not None else None
        if prefix is not None and place is None:
            return await _too_many_sockets(scope, receive, send)
        socket = _LimitedSocket(receive, send, place)
        try:
            return await self.app(scope, socket.receive, socket.send)
        finally:
            socket.stop()
            if place is not None:
                await _place_release(place)


class _LimitedSocket:
    """The receive and send of one socket, with its frame rate and idle timeout. A timer, not a
    wait around each receive, watches for idleness and keeps the socket's place refreshed: frames
    pay for a token bucket only."""

    def __init__(self, receive: Any, send: Any, place: _Place | None) -> None:
        self._receive = receive
        self._send = send
        self.place = place
        self.rate = float(settings.SOCKET_FRAMES_PER_SECOND)
        self.burst = max(1, int(settings.SOCKET_FRAME_BURST))
        self.idle_after = float(settings.SOCKET_IDLE_TIMEOUT_SECONDS)
        self.tokens = float(self.burst)
        self.filled = time.monotonic()
        self.strikes = 0
        self.refused_at = 0.0
        self.active_at = time.monotonic()
        self.accepted = False
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._chores: set[asyncio.Task[None]] = set()
        self._arm()

    async def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return  # closed already (by a limit, or twice by the app): the server would refuse it
        kind = message["type"]
        if kind == "websocket.close":
            self.closed = True
        self.active_at = time.monotonic()
        await self._send(message)
        if kind == "websocket.accept":
            self.accepted = True
            self._arm()  # the idle clock runs from now

    async def receive(self) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = await self._receive()
            if message["type"] != "websocket.receive":
                return message
            if self.closed:
                continue  # sent before the close reached the client: nobody answers it
            self.active_at = time.monotonic()
            retry_after = self._admit()
            if retry_after is None:
                return message
            await self._refuse(retry_after)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for chore in self._chores:
            chore.cancel()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waits = []
        if self.accepted and self.idle_after > 0:
            waits.append(self.active_at + self.idle_after - time.monotonic())
        if self.place is not None and self.place.key is not None:
            waits.append(self.place.refreshed + settings.SOCKET_SLOT_TTL_SECONDS / 3 - time.monotonic())
        if waits and not self.closed:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, min(waits)), self._wake)

    def _wake(self) -> None:
        self._timer = None
        chore = asyncio.ensure_future(self._tick())
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    async def _tick(self) -> None:
        if self.place is not None:
            await _place_refresh(self.place)
        if self.accepted and self.idle_after > 0 and time.monotonic() - self.active_at >= self.idle_after:
            await self.send({"type": "websocket.close", "code": CLOSE_IDLE})  # the server then says disconnect
            return
        self._arm()

    def _admit(self) -> int | None:
        """Take a token for a frame (None), or refuse it: the seconds until one is free."""
        if self.rate <= 0:
            return None
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.filled) * self.rate)
        self.filled = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        if now - self.refused_at > FLOOD_PAUSE_SECONDS:
            self.strikes = 0
        self.strikes += 1
        self.refused_at = now
        return max(1, math.ceil((1 - self.tokens) / self.rate))

    async def _refuse(self, retry_after: int) -> None:
        error = ApplicationError(
            f"Too many frames: at most {self.rate:g} a second. Send again in {retry_after} s.",
            code="rate_limited",
            status=429,
            extra={"retry_after": retry_after},
        )
        await self.send({"type": "websocket.send", "text": json.dumps({"type": "error", **error.as_dict()})})
        if self.strikes >= settings.SOCKET_FLOOD_CLOSE_AFTER:
            await self.send({"type": "websocket.close", "code": CLOSE_FLOOD})


async def _too_many_sockets(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Refuse the handshake: HTTP 429 with Retry-After where the server can say so, else 4429."""
    error = ApplicationError(
        f"You already have {settings.SOCKET_MAX_PER_PERSON} sockets open on this organisation; close one first.",
        code="too_many_sockets",
        status=429,
        extra={"retry_after": SOCKETS_RETRY_AFTER_SECONDS},
    )
    await handshake_refuse(scope, receive, send, error=error, close_code=CLOSE_FLOOD)
