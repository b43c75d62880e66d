"""Admission before slow work: concurrency slots shared by every process, and password hashing slots.

One tenant, one person or one anonymous client must not make another wait or fail (DESIGN.md,
"Fair shares"). Work that may take seconds (an answer, a summary, a password hash) is admitted
here before it starts, or refused at once: 429 for the caller's own share, 503 for the platform's,
both with ``retry_after`` (the API turns it into ``Retry-After``).

Slots live in the shared cache (Redis with REDIS_URL). A slot has a TTL that its holder refreshes,
so a process that died frees its slots by itself. While Redis is unreachable the cache answers from
this process's memory (core.platform.cache): a per-process limit, rather than a failed request.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Protocol, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.deprecation import MiddlewareMixin

from core.platform.exceptions import ApplicationError
from core.platform.priority import thread_run_below

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Slot(Protocol):
    def acquire(self) -> None: ...
    def refresh(self) -> None: ...
    def release(self) -> None: ...


class ConcurrencySlot:
    """One of ``limit`` places under ``scope`` (say, a tenant's answers in flight), held by one
    piece of work. ``acquire`` takes a free place or raises ``refusal``; ``refresh`` keeps it while
    the work goes on (at most one cache call per third of ``ttl``); ``release`` gives it back."""

    def __init__(self, *, scope: str, limit: int, ttl: int, refusal: Callable[[], ApplicationError]) -> None:
        self._prefix = f"strata:slot:{scope}"
        self._limit = limit
        self._ttl = ttl
        self._refusal = refusal
        self._token = secrets.token_hex(8)
        self.key: str | None = None
        self._refreshed = 0.0

    def acquire(self) -> None:
        # Start at a random place: concurrent takers rarely race for the same key.
        first = random.randrange(self._limit) if self._limit else 0
        for step in range(self._limit):
            key = f"{self._prefix}:{(first + step) % self._limit}"
            if cache.add(key, self._token, timeout=self._ttl):
                self.key = key
                self._refreshed = time.monotonic()
                return
        raise self._refusal()

    def refresh(self) -> None:
        if self.key is not None and time.monotonic() - self._refreshed > self._ttl / 3:
            cache.touch(self.key, self._ttl)
            self._refreshed = time.monotonic()

    def release(self) -> None:
        if self.key is not None:
            key, self.key = self.key, None
            if cache.get(key) == self._token:  # expired and taken by another meanwhile: not ours
                cache.delete(key)


class Admission:
    """The slots one piece of work holds: taken in order (all or none) and given back together."""

    def __init__(self, *slots: Slot) -> None:
        self._slots = slots
        self._held: list[Slot] = []

    def acquire(self) -> None:
        try:
            for slot in self._slots:
                slot.acquire()
                self._held.append(slot)
        except BaseException:
            self.release()
            raise

    def add(self, slot: Slot) -> None:
        """Take one more slot (known only once the work is under way, say the tenant's share)."""
        slot.acquire()
        self._held.append(slot)

    def refresh(self) -> None:
        for slot in self._held:
            slot.refresh()

    def release(self) -> None:
        held, self._held = self._held, []
        for slot in reversed(held):
            slot.release()


# A tenant's answers and summaries end within seconds to minutes; a slot whose holder stopped
# refreshing (a dead process) is free again after this long.
TENANT_SLOT_TTL_SECONDS = 60
TENANT_BUSY_RETRY_AFTER_SECONDS = 5


def tenant_slot(*, schema_name: str, limit: int) -> ConcurrencySlot:
    """One of the ``limit`` answers and summaries a tenant may have in flight (its plan's share)."""

    def refusal() -> ApplicationError:
        return ApplicationError(
            f"This organisation already has {limit} answers and summaries in progress; try again in a moment.",
            code="tenant_busy",
            status=429,
            extra={"retry_after": TENANT_BUSY_RETRY_AFTER_SECONDS},
        )

    return ConcurrencySlot(scope=f"tenant:{schema_name}", limit=limit, ttl=TENANT_SLOT_TTL_SECONDS, refusal=refusal)


def connections_release() -> None:
    """Give this thread's pooled database connections back now, unless a transaction holds them;
    the next query takes one again. Called before slow work (a hash, an upstream call, a stream)."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and not connection.in_atomic_block:
            connection.close()


# Password hashes computed at once by this process. Created on first use (nothing runs on import).
_hashing: threading.BoundedSemaphore | None = None
_hashing_lock = threading.Lock()


def _hashing_slots() -> threading.BoundedSemaphore:
    global _hashing
    with _hashing_lock:
        if _hashing is None:
            _hashing = threading.BoundedSemaphore(settings.PASSWORD_HASHING_SLOTS)
        return _hashing


# How much lower than serving a hash runs (a nice value): a login flood takes what the CPU has spare.
HASHING_NICENESS = 10


def _hashing_thread_started() -> None:
    thread_run_below(HASHING_NICENESS)


@functools.cache
def _hashing_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(
        max_workers=settings.PASSWORD_HASHING_SLOTS,
        thread_name_prefix="strata-hash",
        initializer=_hashing_thread_started,
    )


def password_hash(compute: Callable[[], T]) -> T:
    """Run ``compute`` (a password hash) admitted: in one of this process's hashing slots, on a
    thread that runs below the priority of serving, with no pooled connection held meanwhile."""
    with password_hashing_admitted():
        return _hashing_threads().submit(compute).result()


@contextmanager
def password_hashing_admitted() -> Iterator[None]:
    """Hold one of this process's password hashing slots, with no database connection checked out;
    503 ``server_busy`` when none frees within PASSWORD_HASHING_WAIT_SECONDS."""
    connections_release()
    slots = _hashing_slots()
    if not slots.acquire(timeout=settings.PASSWORD_HASHING_WAIT_SECONDS):
        raise ApplicationError(
            "The server is busy signing people in; try again in a moment.",
            code="server_busy",
            status=503,
            extra={"retry_after": 1},
        )
    try:
        yield
    finally:
        slots.release()


class StreamingConnectionsReleaseMiddleware(MiddlewareMixin):
    """First in MIDDLEWARE: a streaming response (an SSE answer, an export) gives the request's
    pooled connection back before its first byte, not when the stream ends. The view and the other
    middleware have finished their queries by now; a stream that must record re-takes one briefly.

    Runs on the request's own thread (MiddlewareMixin's thread-sensitive hop), whose connection
    the view used."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if response.streaming:
            connections_release()
        return response
