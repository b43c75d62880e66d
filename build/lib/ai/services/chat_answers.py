"""Chat answers that outlive their connection: started once, followed by any number of clients,
resumed after a dropped connection on any process, stopped on request or when nobody came back.

An answer runs in a task of the process that accepted it (``chat_answer_open``), not in the
WebSocket consumer or SSE response that asked: each frame goes to the stream log
(ai.services.stream_log) and clients follow the log. When the last follower leaves, the answer
keeps going for CHAT_RESUME_GRACE_SECONDS; if nobody follows it again by then (here, or on another
process, which says so in the shared log), it is cancelled upstream and saved as interrupted with
its tokens. An explicit cancel stops it at once: directly when it runs here, through a cancel
request in the shared log that its process picks up on its next write (a token, or a heartbeat
within a second) when it runs elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from django.conf import settings

from ai.services.chat import ChatTurn, Frame, chat_stream
from ai.services.stream_log import (
    TERMINAL_TYPES,
    RedisStreamLog,
    StreamLog,
    presence_interval,
    stream_key,
    stream_log,
)
from core.models import User
from core.platform.exceptions import ApplicationError

logger = logging.getLogger(__name__)

STOPPED = "Stopped by the user."
ABANDONED = "The client went away and did not resume the answer."
SHUTDOWN = "The server stopped before the answer was finished."
PRODUCER_LOST_AFTER_INTERVALS = 10
CANCEL_WAIT_SECONDS = 5.0


class _Answer:
    """An answer this process is producing: its task, its followers here, its grace timer."""

    def __init__(self, *, key: str, user_id: int, log: StreamLog) -> None:
        self.key = key
        self.user_id = user_id
        self.log = log
        self.task: asyncio.Task[None] | None = None
        self.followers = 0
        self.cancelling = False
        self.terminal_sent = False
        self._seq = itertools.count(1)
        self._grace: asyncio.TimerHandle | None = None
        self._check: asyncio.Task[None] | None = None

    def publish(self, frame: Frame) -> None:
        self.log.append(self.key, {**frame, "seq": next(self._seq)})
        self.terminal_sent = frame["type"] in TERMINAL_TYPES

    def cancel(self, reason: str) -> None:
        if self.task is not None and not self.task.done() and not self.cancelling:
            self.cancelling = True
            self.task.cancel(reason)

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


# The answers this process is producing, by stream key. Holding the tasks here also keeps them alive.
_running: dict[str, _Answer] = {}


def _cancel_requested(key: str) -> None:
    answer = _running.get(key)
    if answer is not None:
        answer.cancel(STOPPED)


async def chat_answer_open(*, turn: ChatTurn) -> AsyncGenerator[Frame, None]:
    """Start answering an accepted turn in a task of this process, and follow it from its start."""
    key = stream_key(schema_name=turn.tenant.schema_name, message_id=turn.message_id)
    log = stream_log()
    answer = _Answer(key=key, user_id=turn.user.pk, log=log)
    _running[key] = answer
    # A context of its own: the answer must not inherit the request's (asgiref's per-request
    # thread executor, above all, is gone when the SSE request that started it ends).
    answer.task = asyncio.get_running_loop().create_task(_produce(answer, turn), context=contextvars.Context())
    # One turn of the loop: the task has opened the log and is inside chat_stream, so a follower
    # finds the log and a cancel finds the task where it can stop it.
    await asyncio.sleep(0)
    return _follow(log, key, after=0)


async def _produce(answer: _Answer, turn: ChatTurn) -> None:
    answer.log.open(answer.key, user_id=answer.user_id, on_cancel=_cancel_requested)
    answer.arm_grace()  # until the asker's follower attaches: it may never come (a dropped request)
    try:
        await chat_stream(turn=turn, publish=answer.publish)
    except asyncio.CancelledError:
        pass  # chat_stream recorded the interruption and published its final frame
    except Exception:
        logger.exception("chat answer %s failed", answer.key)
    finally:
        if not answer.terminal_sent:
            answer.publish(
                {"type": "error", "error": {"code": "internal_error", "message": "The answer could not be completed."}}
            )
        _running.pop(answer.key, None)
        answer.ended()
        await answer.log.close(answer.key)


async def chat_answer_follow(
    *, tenant: Any, user: User, message_id: int, after: int = 0
) -> AsyncGenerator[Frame, None]:
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


async def _follow(log: StreamLog, key: str, *, after: int) -> AsyncGenerator[Frame, None]:
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
                return  # expired while we were away
            for frame in frames:
                yield frame
                after = frame["seq"]
                if frame["type"] in TERMINAL_TYPES:
                    return
            if answer is None and time.monotonic() - touched >= interval:
                await log.touch(key)  # produced on another process: say we are here
                touched = time.monotonic()
            if not frames:
                info = await log.info(key)
                if info is None or (info.ended and info.last_seq <= after):
                    return  # expired, or ended with nothing more to send
                if answer is None and not info.ended and time.time() - info.alive_at > lost_after:
                    yield {
                        "type": "error",
                        "seq": after + 1,
                        "error": {"code": "stream_lost", "message": "The answer stopped before it was finished."},
                    }
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
