"""Chat answers that outlive their connection: started once, followed by any number of clients,
resumed after a dropped connection on any process, stopped on request or when nobody came back.

An answer runs in a task of the process that accepted it (``chat_answer_open``), not in the
WebSocket consumer or SSE response that asked: each frame goes to the stream log
(ai.chat.stream_log) and clients follow the log. When the last follower leaves, the answer
keeps going for CHAT_RESUME_GRACE_SECONDS; if nobody follows it again by then (here, or on another
process, which says so in the shared log), it is cancelled upstream and saved as interrupted with
its tokens. An explicit cancel stops it at once: directly when it runs here, through a cancel
request in the shared log that its process picks up on its next write (a token, or a heartbeat
within a second) when it runs elsewhere. A revocation of its asker's access (tenant suspended or
deleted, member removed, key revoked: tenants.services.status) stops it within a second on any
process: one watcher per process reads the revocations of every answer it produces from the cache
twice a second; the answer is saved as interrupted and ends with an ``access_revoked`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from django.conf import settings

from ai.chat.services import ChatTurn, Frame, chat_stream, error_frame
from ai.chat.stream_log import (
    TERMINAL_TYPES,
    RedisStreamLog,
    StreamLog,
    presence_interval,
    stream_key,
    stream_log,
)
from core.models import User
from core.platform.database_steps import database_step
from core.platform.exceptions import ApplicationError
from tenants.services.status import access_allowed, access_revocations

logger = logging.getLogger(__name__)

STOPPED = "Stopped by the user."
ABANDONED = "The client went away and did not resume the answer."
SHUTDOWN = "The server stopped before the answer was finished."
REVOKED = "Access was revoked while the answer was streaming."
PRODUCER_LOST = "The answer stopped before it was finished."
LOG_GONE = "The answer's stream is gone; the conversation has the answer as it was saved."
PRODUCER_LOST_AFTER_INTERVALS = 10
CANCEL_WAIT_SECONDS = 5.0
# How often the answers of a process look for revocations: one cache read for all of them.
REVOCATION_CHECK_SECONDS = 0.5
# Revocations this long before an answer started concern it too: its asker was allowed when the
# turn was accepted, a moment before (and the clocks of processes differ a little). The database
# then says whether the asker still is, so a revocation undone meanwhile stops nothing.
REVOCATION_LOOKBACK_SECONDS = 30.0
REVOKED_FRAME_WAIT_SECONDS = 0.5
REVOCATION_WARNING_EVERY_SECONDS = 60.0  # an unreachable cache is said once a minute, not twice a second


class _Answer:
    """An answer this process is producing: its task, its followers here, its grace timer."""

    def __init__(self, *, key: str, turn: ChatTurn, log: StreamLog) -> None:
        self.key = key
        self.user_id = turn.user.pk
        self.tenant_id = turn.tenant.pk
        self.schema_name = turn.tenant.schema_name
        self.message_id = turn.message_id
        self.log = log
        self.task: asyncio.Task[None] | None = None
        self.followers = 0
        self.cancelling = False
        self.terminal_sent = False
        self.revoked = False
        # Revocations up to this time (time.time()) are known not to concern this answer.
        self.revocations_seen = time.time() - REVOCATION_LOOKBACK_SECONDS
        self._seq = itertools.count(1)
        self._grace: asyncio.TimerHandle | None = None
        self._check: asyncio.Task[None] | None = None
        self._told: asyncio.TimerHandle | None = None

    def publish(self, frame: Frame) -> None:
        if self.terminal_sent:
            return  # a revoked answer whose followers were told before it was saved
        if self.revoked and frame["type"] in TERMINAL_TYPES:
            frame = self.revoked_frame(usage=frame.get("usage"))  # saved as interrupted; told as revoked
        self.log.append(self.key, {**frame, "seq": next(self._seq)})
        self.terminal_sent = frame["type"] in TERMINAL_TYPES

    def cancel(self, reason: str) -> None:
        if self.task is not None and not self.task.done() and not self.cancelling:
            self.cancelling = True
            self.task.cancel(reason)

    def revoke(self) -> None:
        if self.task is not None and not self.task.done() and not self.cancelling:
            self.revoked = True
            self.cancel(REVOKED)
            # Saved within milliseconds, it ends with its usage in its last frame. If saving takes
            # longer (its tenant's schema is gone, the database is failing over), the followers are
            # told without it, and the saving goes on.
            self._told = asyncio.get_running_loop().call_later(REVOKED_FRAME_WAIT_SECONDS, self._tell_revoked)

    def _tell_revoked(self) -> None:
        if self.task is not None and not self.task.done():
            self.publish(self.revoked_frame(usage=None))

    def revoked_frame(self, *, usage: dict[str, int] | None) -> Frame:
        extra: dict[str, Any] = {"message_id": self.message_id}
        if usage is not None:
            extra["usage"] = usage
        return error_frame(
            ApplicationError(
                "Access to this organisation was revoked, so the answer was stopped; the tokens it used are counted.",
                code="access_revoked",
                status=403,
                extra=extra,
            )
        )

    def attach(self) -> None:
        self.followers += 1
        self._disarm()

    def detach(self) -> None:
        self.followers -= 1
        if self.followers == 0:
            self.arm_grace()

    def arm_grace(self) -> None:
        if self.task is not None and not self.task.done():
            self._arm(settings.CHAT_RESUME_GRACE_SECONDS)

    def _arm(self, delay: float) -> None:
        self._disarm()
        self._grace = asyncio.get_running_loop().call_later(delay, self._grace_over)

    def _disarm(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _grace_over(self) -> None:
        self._grace = None
        if not self.followers:
            self._check = asyncio.get_running_loop().create_task(self._cancel_unless_followed_elsewhere())

    async def _cancel_unless_followed_elsewhere(self) -> None:
        try:
            watched = await self.log.watched_at(self.key)
        except Exception:  # the shared log is unreachable: nobody can be following there either
            logger.warning("stream log unreachable while checking followers of %s", self.key, exc_info=True)
            watched = None
        if self.followers or self.task is None or self.task.done():
            return
        remaining = (watched + settings.CHAT_RESUME_GRACE_SECONDS - time.time()) if watched else 0.0
        if remaining > 0:
            self._arm(remaining)
        else:
            self.cancel(ABANDONED)

    def ended(self) -> None:
        self._disarm()
        if self._told is not None:
            self._told.cancel()


# What a follower receives: the frames in order, in the batches they were read from the log (the
# frames published while it waited), so a transport may write a batch at once.
Frames = AsyncGenerator[list[Frame], None]

# The answers this process is producing, by stream key. Holding the tasks here also keeps them alive.
_running: dict[str, _Answer] = {}


def _cancel_requested(key: str) -> None:
    answer = _running.get(key)
    if answer is not None:
        answer.cancel(STOPPED)


async def chat_answer_open(*, turn: ChatTurn) -> Frames:
    """Start answering an accepted turn in a task of this process, and follow it from its start."""
    key = stream_key(schema_name=turn.tenant.schema_name, message_id=turn.message_id)
    log = stream_log()
    answer = _Answer(key=key, turn=turn, log=log)
    _running[key] = answer
    # A context of its own: the answer must not inherit the request's (asgiref's per-request
    # thread executor, above all, is gone when the SSE request that started it ends).
    answer.task = asyncio.get_running_loop().create_task(_produce(answer, turn), context=contextvars.Context())
    _revocations_watch_start()
    # One turn of the loop: the task has opened the log and is inside chat_stream, so a follower
    # finds the log and a cancel finds the task where it can stop it.
    await asyncio.sleep(0)
    # The start frame names the answer; a client holding it may resume it on another process at once.
    await log.visible(key)
    return _follow(log, key, after=0)


async def _produce(answer: _Answer, turn: ChatTurn) -> None:
    answer.log.open(answer.key, user_id=answer.user_id, on_cancel=_cancel_requested)
    answer.arm_grace()  # until the asker's follower attaches: it may never come (a dropped request)
    try:
        await chat_stream(turn=turn, publish=answer.publish)
    except asyncio.CancelledError:
        pass  # chat_stream recorded the interruption and published its final frame
    except Exception:
        if answer.revoked:  # its tenant was deleted under it: nothing left to save it in
            logger.info("chat answer %s revoked and not saved", answer.key, exc_info=True)
        else:
            logger.exception("chat answer %s failed", answer.key)
    finally:
        if not answer.terminal_sent:  # (a revoked answer's says access_revoked)
            answer.publish(
                {"type": "error", "error": {"code": "internal_error", "message": "The answer could not be completed."}}
            )
        _running.pop(answer.key, None)
        answer.ended()
        await answer.log.close(answer.key)


# The revocation watcher of each event loop that produces answers (a server has one).
_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = weakref.WeakKeyDictionary()


def _revocations_watch_start() -> None:
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None or watcher.done():
        _watchers[loop] = loop.create_task(_revocations_watch(), context=contextvars.Context())


def _watched(loop: asyncio.AbstractEventLoop) -> list[_Answer]:
    return [
        answer
        for answer in _running.values()
        if answer.task is not None
        and answer.task.get_loop() is loop
        and not answer.task.done()
        and not answer.cancelling
    ]


async def _revocations_watch() -> None:
    """While this loop produces answers: twice a second, one cache read for the newest revocation
    of every tenant and asker among them; an answer with one since it started asks the database
    whether its asker still has access, and stops if not. Ends when no answer is left."""
    loop = asyncio.get_running_loop()
    warned_at = -REVOCATION_WARNING_EVERY_SECONDS
    while _watched(loop):
        await asyncio.sleep(REVOCATION_CHECK_SECONDS)
        answers = _watched(loop)
        if not answers:
            return
        try:
            # In a thread: the cache may be Redis, which must not hold up the loop (or, when down, stall it).
            revoked_at = await asyncio.to_thread(
                access_revocations, grants={(answer.schema_name, answer.user_id) for answer in answers}
            )
        except Exception:  # the cache is unreachable: sockets still close on their next frame
            if time.monotonic() - warned_at > REVOCATION_WARNING_EVERY_SECONDS:
                logger.warning("could not read revocations from the cache", exc_info=True)
                warned_at = time.monotonic()
            continue
        suspects = [
            (answer, at)
            for answer in answers
            if (at := revoked_at.get((answer.schema_name, answer.user_id), 0.0)) > answer.revocations_seen
        ]
        if suspects:
            await asyncio.gather(*(_revocation_check(answer, at) for answer, at in suspects), return_exceptions=True)


async def _revocation_check(answer: _Answer, revoked_at: float) -> None:
    try:
        allowed = await database_step(access_allowed)(tenant_id=answer.tenant_id, user_id=answer.user_id)
    except Exception:  # the database is unreachable: asked again on the next round
        logger.warning("could not check the access of answer %s", answer.key, exc_info=True)
        return
    if allowed:
        answer.revocations_seen = max(answer.revocations_seen, revoked_at)
    else:
        answer.revoke()


async def chat_answer_follow(*, tenant: Any, user: User, message_id: int, after: int = 0) -> Frames:
    """Resume one of ``user``'s answers: the frames after ``after`` replayed, then live ones until
    ``done`` or ``error``. A finished answer replays the rest and its final frame.

    Refuses (``not_found``) an answer of someone else, of another tenant (message ids are looked up
    in this tenant's logs only) or whose log has expired: the saved message is then the answer.
    Checked before the frames are returned, so a transport can refuse with a plain error.
    """
    key = stream_key(schema_name=tenant.schema_name, message_id=message_id)
    log = stream_log()
    info = await log.info(key)
    if info is None or info.user_id != user.pk:
        raise ApplicationError("No such answer to resume.", code="not_found", status=404)
    if info.ended and after >= info.last_seq:
        after = info.last_seq - 1  # nothing new: the final frame again, so the client knows it ended
    return _follow(log, key, after=after)


def _lost(after: int, message: str) -> Frame:
    """A follower's last frame when it cannot go on: the client reads the saved message instead."""
    return {"type": "error", "seq": after + 1, "error": {"code": "stream_lost", "message": message}}


async def _follow(log: StreamLog, key: str, *, after: int) -> Frames:
    answer = _running.get(key)
    if answer is not None:
        answer.attach()
    interval = presence_interval()
    # A follower elsewhere gives up on an answer whose process shows no sign of life for this long.
    lost_after = PRODUCER_LOST_AFTER_INTERVALS * interval + 1
    touched = 0.0
    try:
        while True:
            frames = await log.read(key, after=after, wait=interval)
            if frames is None:
                yield [_lost(after, LOG_GONE)]  # expired while we were away
                return
            batch: list[Frame] = []
            for frame in frames:
                if frame["seq"] != after + 1:  # frames missing (Redis lost them): it cannot be replayed whole
                    yield [*batch, _lost(after, LOG_GONE)]
                    return
                batch.append(frame)
                after = frame["seq"]
                if frame["type"] in TERMINAL_TYPES:
                    yield batch
                    return
            if batch:
                yield batch
            if answer is None and time.monotonic() - touched >= interval:
                await log.touch(key)  # produced on another process: say we are here
                touched = time.monotonic()
            if not frames:
                info = await log.info(key)
                if info is None:  # expired, or Redis restarted without it: the saved message is the answer
                    yield [_lost(after, LOG_GONE)]
                    return
                if info.ended and info.last_seq <= after:
                    return  # ended with nothing more to send
                if answer is None and not info.ended and time.time() - info.alive_at > lost_after:
                    yield [_lost(after, PRODUCER_LOST)]
                    return
    finally:
        if answer is not None:
            answer.detach()
        elif touched:
            with contextlib.suppress(Exception):
                await log.touch(key)  # the grace period of the producing process counts from now


async def chat_answer_cancel(*, tenant: Any, user: User, message_id: int) -> bool:
    """Stop one of ``user``'s answers now, wherever it runs; False if it had already ended.

    Returns once the answer is saved as interrupted (or after CANCEL_WAIT_SECONDS)."""
    key = stream_key(schema_name=tenant.schema_name, message_id=message_id)
    log = stream_log()
    info = await log.info(key)
    if info is None or info.user_id != user.pk:
        raise ApplicationError("No such answer to cancel.", code="not_found", status=404)
    if info.ended:
        return False
    answer = _running.get(key)
    if answer is not None and answer.task is not None:
        answer.cancel(STOPPED)
        await asyncio.wait({answer.task}, timeout=CANCEL_WAIT_SECONDS)
        return True
    await log.cancel_request(key)
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < deadline:
        info = await log.info(key)
        if info is None or info.ended:
            break
        await asyncio.sleep(0.02)
    return True


async def chat_answers_drain() -> None:
    """At shutdown, with a shared log (Redis): answers in flight go on, for clients that reconnect
    to another process and resume them there, until they end (or nobody follows them for the
    grace period), for at most CHAT_SHUTDOWN_DRAIN_SECONDS. Then, and at once without Redis
    (nobody else could follow them), the rest are cancelled and saved as interrupted."""
    tasks = {answer.task for answer in _running.values() if answer.task is not None}
    if tasks and isinstance(stream_log(), RedisStreamLog):
        await asyncio.wait(tasks, timeout=settings.CHAT_SHUTDOWN_DRAIN_SECONDS)
    for answer in list(_running.values()):
        answer.cancel(SHUTDOWN)
    if tasks:
        await asyncio.wait(tasks, timeout=CANCEL_WAIT_SECONDS)
