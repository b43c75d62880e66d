"""Sync database steps awaited from async code (WebSocket handshakes, chat turns), on threads of
their own rather than Channels' one shared ``database_sync_to_async`` thread.

That one thread serialises every handshake and every chat step of the process: with hundreds of
sockets opening at once, a question's first step queued behind all of their lookups. Here a few
threads per lane share the work, each holding a pooled connection only while its step runs:

* ``"connect"``: the lookups before a socket or a turn is allowed (handshakes, re-authorisation,
  the steps before a first token). Never queued behind records.
* ``"records"``: what is written after an answer (usage, actions), which may wait on the
  tenant's usage row lock.

Like Channels' helper, a step returns its thread's connection to the pool when it ends, but only
after handing the caller its result: the pool's reset is one round trip less on the caller's path.
A step must enter the schema it needs itself (``tenant_context``): a thread's connection may last
have served any tenant.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from django.conf import settings
from django.db import close_old_connections

T = TypeVar("T")
Lane = Literal["connect", "records"]


@functools.cache
def _threads(lane: Lane) -> ThreadPoolExecutor:
    count = settings.DATABASE_STEP_THREADS
    workers = count if lane == "connect" else max(1, count // 2)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"strata-db-{lane}")


def database_step(
    step: Callable[..., T], *, lane: Lane = "connect", abandoned: Callable[[T], None] | None = None
) -> Callable[..., Awaitable[T]]:
    """``step`` (a sync function that uses the database), awaitable, run on ``lane``'s threads.

    A caller cancelled while the step runs does not stop it (a thread cannot be interrupted);
    ``abandoned`` then gets the result nobody will read, to undo what must not outlive it."""
    executor = _threads(lane)

    async def run(*args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            close_old_connections()
            try:
                result = step(*args, **kwargs)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None, abandoned)
            finally:
                close_old_connections()

        executor.submit(work)
        return await future

    return run


def _settle(
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
    abandoned: Callable[[Any], None] | None = None,
) -> None:
    if future.done():  # the caller was cancelled meanwhile
        if abandoned is not None and exc is None:
            abandoned(result)
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
