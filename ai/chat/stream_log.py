"""The stream log: every frame of a chat answer, numbered from 1 (``seq``), kept so that a client can
pick the answer up again after a dropped connection, on any process.

One interface, two backends chosen by the settings: Redis Streams when REDIS_URL is set (shared by
every process), the process's own memory otherwise. A log expires CHAT_RESUME_TTL_SECONDS after its
answer ends; the saved Message is the source of truth after that.

Appending is synchronous and never waits on the network: the Redis backend keeps the frames of the
answers this process produces in memory too (its own followers read them there) and writes them to
Redis from one writer task per answer, a pipeline per batch. Besides the frames a Redis log holds
who may read it, a heartbeat of the producing process, the last time a follower on another process
was attached, and a cancel request that the producing process picks up on its next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

Frame = dict[str, Any]
TERMINAL_TYPES = frozenset({"done", "error"})
# A Redis write that fails is retried; an ending answer waits this long for its last frames to land.
FLUSH_TIMEOUT_SECONDS = 5.0
# A new answer's first frame waits at most this long for its log to reach Redis (a Redis that
# refuses connections answers at once; one that does not answer must not hold the answer up).
VISIBLE_TIMEOUT_SECONDS = 1.0


def stream_key(*, schema_name: str, message_id: int) -> str:
    """A log's name: message ids are per tenant schema, so the schema is part of it."""
    return f"{schema_name}:{message_id}"


def presence_interval() -> float:
    """How often followers announce themselves and a producer beats its heart: a few times per
    grace period, at most once a second."""
    return max(0.05, min(1.0, float(settings.CHAT_RESUME_GRACE_SECONDS) / 4))


@dataclass(frozen=True)
class LogInfo:
    user_id: int
    last_seq: int
    ended: bool
    # time.time() of the producing process's last sign of life (Redis); now for a local log.
    alive_at: float


class StreamLog(Protocol):
    def open(self, key: str, *, user_id: int, on_cancel: Callable[[str], None] | None = None) -> None:
        """Start the log of a new answer produced by this process."""

    def append(self, key: str, frame: Frame) -> None:
        """Add the next frame (its ``seq`` is one more than the last); never blocks."""

    async def visible(self, key: str) -> None:
        """Return once another process can find this new log (its first write has landed, or failed:
        Redis is down), or after VISIBLE_TIMEOUT_SECONDS. Its first frame reaches a client only then,
        so a client holding it can resume the answer anywhere."""

    async def close(self, key: str) -> None:
        """The answer ended: write out what is pending and let the log expire after the TTL."""

    async def info(self, key: str) -> LogInfo | None:
        """Who may read the log and how far it got; None when there is no such log (any more)."""

    async def read(self, key: str, *, after: int, wait: float) -> list[Frame] | None:
        """The frames after ``after``, waiting up to ``wait`` seconds for one when there are
        none yet; None when the log is gone."""

    async def touch(self, key: str) -> None:
        """A follower in another process is attached to this answer."""

    async def watched_at(self, key: str) -> float | None:
        """When a follower in another process last said it was attached (time.time())."""

    async def cancel_request(self, key: str) -> None:
        """Ask the process producing this answer (elsewhere) to stop it."""


class _Log:
    __slots__ = ("expires_at", "frames", "user_id", "waiters")

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.frames: list[Frame] = []
        self.expires_at: float | None = None  # set when the answer ends
        self.waiters: list[asyncio.Future[None]] = []

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for waiter in waiters:
            if waiter.get_loop() is running:
                _resolve(waiter)
            else:
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MemoryStreamLog:
    """The logs of this process's answers, in its memory (the embedded default)."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._expiry: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def open(self, key: str, *, user_id: int, on_cancel: Callable[[str], None] | None = None) -> None:
        with self._lock:
            self._purge()
            self._logs[key] = _Log(user_id)

    def append(self, key: str, frame: Frame) -> None:
        log = self._logs.get(key)
        if log is None or log.expires_at is not None:
            raise RuntimeError(f"stream log {key} is not open")
        log.frames.append(frame)
        log.wake()

    async def visible(self, key: str) -> None:
        return  # one process: found as soon as it is opened

    async def close(self, key: str) -> None:
        log = self._logs.get(key)
        if log is not None and log.expires_at is None:
            with self._lock:
                log.expires_at = time.monotonic() + settings.CHAT_RESUME_TTL_SECONDS
                heapq.heappush(self._expiry, (log.expires_at, key))
            log.wake()

    def discard(self, key: str) -> None:
        log = self._logs.pop(key, None)
        if log is not None:
            log.wake()

    def has(self, key: str) -> bool:
        return self._live(key) is not None

    async def info(self, key: str) -> LogInfo | None:
        log = self._live(key)
        if log is None:
            return None
        return LogInfo(
            user_id=log.user_id, last_seq=len(log.frames), ended=log.expires_at is not None, alive_at=time.time()
        )

    async def read(self, key: str, *, after: int, wait: float) -> list[Frame] | None:
        log = self._live(key)
        if log is None:
            return None
        # Frames are kept in seq order from 1, so the frames after `after` start at index `after`.
        if len(log.frames) <= after and log.expires_at is None:
            waiter = asyncio.get_running_loop().create_future()
            log.waiters.append(waiter)
            try:
                await asyncio.wait({waiter}, timeout=wait)
            finally:
                waiter.cancel()
            if self._logs.get(key) is not log:
                return None
        return log.frames[max(after, 0) :]

    async def touch(self, key: str) -> None:
        return None

    async def watched_at(self, key: str) -> float | None:
        return None

    async def cancel_request(self, key: str) -> None:
        return None

    def _live(self, key: str) -> _Log | None:
        log = self._logs.get(key)
        if log is not None and log.expires_at is not None and log.expires_at <= time.monotonic():
            with self._lock:
                self._purge()
            return None
        return log

    def _purge(self) -> None:
        now = time.monotonic()
        while self._expiry and self._expiry[0][0] <= now:
            _, key = heapq.heappop(self._expiry)
            log = self._logs.get(key)
            if log is not None and log.expires_at is not None and log.expires_at <= now:
                del self._logs[key]
                log.wake()


class RedisStreamLog:
    """Logs in Redis Streams, shared by every process (``REDIS_URL``).

    Keys per answer: ``strata:chat:{<schema>:<id>}:frames`` (a stream whose entry ids are
    ``<seq>-0``) and ``...:meta`` (a hash: user, state, last, alive, watched, cancel). The braces
    keep both keys on one slot of a Redis Cluster.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = MemoryStreamLog()
        self._writers: dict[str, _RedisWriter] = {}
        # A redis.asyncio client's connections belong to the event loop that opened them.
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Redis, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()
        self._clients_lock = threading.Lock()

    @staticmethod
    def keys(key: str) -> tuple[str, str]:
        return f"strata:chat:{{{key}}}:frames", f"strata:chat:{{{key}}}:meta"

    def client(self) -> Any:  # redis.asyncio.Redis, whose stubs mix sync and async return types
        """The client of the running event loop, closed when that loop shuts down."""
        from redis.asyncio import BlockingConnectionPool, Redis

        loop = asyncio.get_running_loop()
        with self._clients_lock:
            entry = self._clients.get(loop)
            if entry is None:
                # Bounded: a burst of followers waits for a free connection instead of opening more.
                pool = BlockingConnectionPool.from_url(
                    self.url,
                    decode_responses=True,
                    max_connections=settings.REDIS_MAX_CONNECTIONS,
                    timeout=settings.REDIS_POOL_TIMEOUT,
                    client_name="strata-stream-log",
                )
                client = Redis.from_pool(pool)
                # Held here with its client: starting the generator registers it with the loop, whose
                # shutdown_asyncgens() then closes the client on its own loop.
                entry = self._clients[loop] = (client, _close_with_loop(client))
                asyncio.ensure_future(anext(entry[1]))
        return entry[0]

    def open(self, key: str, *, user_id: int, on_cancel: Callable[[str], None] | None = None) -> None:
        self._local.open(key, user_id=user_id)
        self._writers[key] = _RedisWriter(self, key, user_id=user_id, on_cancel=on_cancel)

    def append(self, key: str, frame: Frame) -> None:
        self._local.append(key, frame)
        self._writers[key].push(frame)

    async def visible(self, key: str) -> None:
        writer = self._writers.get(key)
        if writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.first_write.wait(), VISIBLE_TIMEOUT_SECONDS)

    async def close(self, key: str) -> None:
        writer = self._writers.pop(key, None)
        await self._local.close(key)
        if writer is not None:
            await writer.finish()
        # Redis holds every frame now; followers here continue from there.
        self._local.discard(key)

    async def info(self, key: str) -> LogInfo | None:
        if self._local.has(key):
            return await self._local.info(key)
        meta = await self.client().hgetall(self.keys(key)[1])
        if not meta or "user" not in meta:
            return None
        return LogInfo(
            user_id=int(meta["user"]),
            last_seq=int(meta.get("last", 0)),
            ended=meta.get("state") == "ended",
            alive_at=float(meta.get("alive", 0)),
        )

    async def read(self, key: str, *, after: int, wait: float) -> list[Frame] | None:
        if self._local.has(key):
            frames = await self._local.read(key, after=after, wait=wait)
            if frames is not None:
                return frames
        frames_key, _ = self.keys(key)
        reply = await self.client().xread({frames_key: f"{max(after, 0)}-0"}, block=max(1, int(wait * 1000)))
        if not reply:
            return []
        _, entries = reply[0]
        return [json.loads(fields["f"]) for _, fields in entries]

    async def touch(self, key: str) -> None:
        _, meta_key = self.keys(key)
        # Only an existing log: a late touch must not bring back an expired one.
        await self.client().eval(_TOUCH_SCRIPT, 1, meta_key, repr(time.time()))

    async def watched_at(self, key: str) -> float | None:
        value = await self.client().hget(self.keys(key)[1], "watched")
        return float(value) if value else None

    async def cancel_request(self, key: str) -> None:
        _, meta_key = self.keys(key)
        await self.client().hset(meta_key, "cancel", "1")


_TOUCH_SCRIPT = "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'watched', ARGV[1]) end"


async def _close_with_loop(client: Redis) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


class _RedisWriter:
    """Writes one answer's frames to Redis in order, a pipeline per batch, and between batches
    beats the producer's heart and looks for a cancel request."""

    def __init__(self, log: RedisStreamLog, key: str, *, user_id: int, on_cancel: Callable[[str], None] | None) -> None:
        self.log = log
        self.key = key
        self.user_id = user_id
        self.on_cancel = on_cancel
        self.pending: list[Frame] = []
        self.ending = False
        self.wake = asyncio.Event()
        self.first_write = asyncio.Event()  # set once the first write has landed or failed
        self.task = asyncio.get_running_loop().create_task(self._run())

    def push(self, frame: Frame) -> None:
        self.pending.append(frame)
        self.wake.set()

    async def finish(self) -> None:
        self.ending = True
        self.wake.set()
        # asyncio.wait: a timeout leaves the writer running rather than cancelling it mid-pipeline.
        await asyncio.wait({self.task}, timeout=FLUSH_TIMEOUT_SECONDS)

    async def _run(self) -> None:
        opened = False
        failures = 0
        while True:
            if opened and not self.pending and not self.ending:  # the first write goes at once
                try:
                    await asyncio.wait_for(self.wake.wait(), presence_interval())
                except TimeoutError:
                    pass
            self.wake.clear()
            batch, self.pending = self.pending, []
            ending = self.ending
            try:
                cancel = await self._write(batch, opened=opened, ending=ending)
            except Exception as exc:  # a Redis outage must not end the answer: retry, keep the frames
                self.first_write.set()  # nobody elsewhere can find it now: not worth waiting for
                failures += 1
                logger.warning("stream log %s: Redis write failed (%r), retrying", self.key, exc)
                self.pending[:0] = batch
                if ending and failures * 0.2 >= FLUSH_TIMEOUT_SECONDS:
                    return
                await asyncio.sleep(min(0.2 * failures, 2.0))
                continue
            failures = 0
            opened = True
            self.first_write.set()
            if cancel and self.on_cancel is not None and not ending:
                self.on_cancel(self.key)
            if ending and not self.pending:
                return

    async def _write(self, batch: list[Frame], *, opened: bool, ending: bool) -> bool:
        frames_key, meta_key = self.log.keys(self.key)
        ttl_ms = max(1, int(settings.CHAT_RESUME_TTL_SECONDS * 1000))
        pipe = self.log.client().pipeline(transaction=False)
        fields: dict[str, Any] = {"alive": repr(time.time())}
        if not opened:
            fields.update(user=self.user_id, state="running", last=0)
        for frame in batch:
            pipe.xadd(frames_key, {"f": json.dumps(frame)}, id=f"{frame['seq']}-0")
        if batch:
            fields["last"] = batch[-1]["seq"]
        if ending:
            fields["state"] = "ended"
        pipe.hset(meta_key, mapping=fields)
        pipe.pexpire(frames_key, ttl_ms)
        pipe.pexpire(meta_key, ttl_ms)
        pipe.hget(meta_key, "cancel")
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            # A retried batch may find some of its entries already written: that is fine.
            if isinstance(result, Exception) and "equal or smaller" not in str(result):
                raise result
        return bool(results[-1])


@functools.cache
def _log_for(redis_url: str) -> StreamLog:
    return RedisStreamLog(redis_url) if redis_url else MemoryStreamLog()


def stream_log() -> StreamLog:
    """The log the settings ask for: Redis Streams with REDIS_URL, this process's memory otherwise."""
    return _log_for(settings.REDIS_URL)
