"""Background work in a schema: an in-process worker pool by default, at once in tests.

Every task runs inside its tenant's schema on a connection of its own thread and closes that
connection afterwards, so no schema leaks from one tenant's job into another's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django_tenants.utils import schema_context

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_pending: set[Future[None]] = set()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=settings.TASK_WORKERS, thread_name_prefix="strata-task")
        return _executor


def _run(task: Callable[..., Any], schema_name: str, kwargs: dict[str, Any]) -> None:
    try:
        with schema_context(schema_name):
            task(**kwargs)
    except Exception:
        logger.exception("task %s failed in schema %s", task.__name__, schema_name)


def _run_in_worker(task: Callable[..., Any], schema_name: str, kwargs: dict[str, Any]) -> None:
    # A worker thread has its own connection: make sure it is usable, and never keep it idle.
    close_old_connections()
    try:
        _run(task, schema_name, kwargs)
    finally:
        connection.close()


def task_enqueue(task: Callable[..., Any], *, schema_name: str, **kwargs: Any) -> None:
    """Run ``task(**kwargs)`` in ``schema_name``; call it from ``transaction.on_commit``."""
    if settings.TASK_MODE == "eager":
        _run(task, schema_name, kwargs)
        return
    future = _pool().submit(_run_in_worker, task, schema_name, kwargs)
    _pending.add(future)
    future.add_done_callback(_pending.discard)


def tasks_wait(timeout: float = 60.0) -> bool:
    """Block until queued background tasks finish (tests, benchmarks, shutdown); True if all did."""
    done, not_done = wait(list(_pending), timeout=timeout)
    return not not_done
