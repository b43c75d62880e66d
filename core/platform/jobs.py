"""Background jobs on procrastinate (PostgreSQL-backed, LISTEN/NOTIFY): the one place where a job
enters its tenant's schema.

A job is deferred through Django's own connection, so it is written in the same transaction as
the rows it works on: a committed upload always has its ingestion job, a rolled-back one never
does. procrastinate's tables live in ``public`` (a shared app), and a worker runs each job on
connections with no tenant set, so every tenant job names its schema and ``tenant_task`` enters
it around the task, in one place, instead of each task remembering to.

``TASK_MODE=eager`` (unit tests) runs a job in-process when the deferring transaction commits.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context
from procrastinate import PsycopgConnector, RetryStrategy
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.contrib.django.utils import connector_params
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.jobs import Job
from procrastinate.tasks import Task

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "Job",
    "RetryStrategy",
    "app",
    "job_defer",
    "TransientJobError",
    "public_task",
    "tenant_job_defer",
    "tenant_task",
]


class TenantJobError(RuntimeError):
    """A tenant job was deferred or run without a tenant schema."""


class TransientJobError(Exception):
    """A failure worth another attempt (a provider down, a timeout): procrastinate retries the job."""


def tenant_task(**options: Any) -> Callable[[Callable[..., R]], Task[..., R, ...]]:
    """Register ``func`` as a job that runs inside the schema named by its ``schema_name`` argument.

    Defer it by name with ``tenant_job_defer(name, **kwargs)``, which adds the current schema.
    The function receives only its own keyword arguments, plus ``final_attempt`` (whether a
    ``TransientJobError`` would still be retried) when it is given ``pass_final_attempt=True``.
    """
    pass_final_attempt = options.pop("pass_final_attempt", False)

    def decorator(func: Callable[..., R]) -> Task[..., R, ...]:
        @functools.wraps(func)
        def run(context: Any, *, schema_name: str, **kwargs: Any) -> R:
            if not schema_name or schema_name == get_public_schema_name():
                raise TenantJobError(f"{task.name} is a tenant job and needs a tenant schema, not {schema_name!r}.")
            if pass_final_attempt:
                kwargs["final_attempt"] = not _will_retry(task, context.job)
            with schema_context(schema_name):
                return func(**kwargs)

        task = app.task(pass_context=True, **options)(run)
        _TENANT_TASKS.add(task.name)
        return task

    return decorator


def public_task(**options: Any) -> Callable[[Callable[..., R]], Task[..., R, ...]]:
    """Register ``func`` as a job that works in ``public`` (platform-wide: billing, spares, mail)."""

    def decorator(func: Callable[..., R]) -> Task[..., R, ...]:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> R:
            with schema_context(get_public_schema_name()):
                return func(*args, **kwargs)

        return app.task(**options)(run)

    return decorator


_TENANT_TASKS: set[str] = set()


def job_defer(name: str, **kwargs: Any) -> None:
    """Defer the job ``name`` in the caller's transaction (run on commit with TASK_MODE=eager).

    Jobs are deferred by name, so a service never imports the tasks module that calls it.
    """
    task = app.tasks[name]
    if name in _TENANT_TASKS and "schema_name" not in kwargs:
        raise TenantJobError(f"{name} is a tenant job: defer it with tenant_job_defer().")
    if settings.TASK_MODE == "eager":
        transaction.on_commit(functools.partial(_run_eagerly, task, kwargs))
        return
    if task.queueing_lock is None:
        task.defer(**kwargs)
        return
    # One such job waiting is enough. The refusal is a unique violation, which would abort the
    # caller's whole transaction: a savepoint keeps it to this statement.
    try:
        with transaction.atomic():
            task.defer(**kwargs)
    except AlreadyEnqueued:
        logger.debug("%s is already queued", name)


def tenant_job_defer(name: str, **kwargs: Any) -> None:
    """Defer a ``tenant_task`` for the schema the connection is on now."""
    schema_name = connection.schema_name
    if schema_name == get_public_schema_name():
        raise TenantJobError(f"{name} must be deferred from inside a tenant's schema.")
    job_defer(name, schema_name=schema_name, **kwargs)


def _will_retry(task: Task[..., Any, ...], job: Job) -> bool:
    if settings.TASK_MODE == "eager" or task.retry_strategy is None:
        return False
    return task.retry_strategy.get_retry_decision(exception=TransientJobError(), job=job) is not None


# --- Platform-wide periodic jobs: each runs once per period whatever the number of workers
# (procrastinate defers a periodic job once per timestamp, under a queueing lock).


@app.periodic(cron=settings.JOBS_PRUNE_CRON)
@app.task(name="core.jobs_prune", queue="maintenance", queueing_lock="core.jobs_prune", pass_context=True)
async def jobs_prune(context: Any, timestamp: int) -> None:
    """Delete finished jobs older than JOBS_KEEP_FINISHED_HOURS: workers slow down on millions of rows."""
    await context.app.job_manager.delete_old_jobs(
        nb_hours=settings.JOBS_KEEP_FINISHED_HOURS, include_failed=True, include_cancelled=True, include_aborted=True
    )


@app.periodic(cron=settings.JOBS_STALLED_CHECK_CRON)
@app.task(
    name="core.jobs_retry_stalled", queue="maintenance", queueing_lock="core.jobs_retry_stalled", pass_context=True
)
async def jobs_retry_stalled(context: Any, timestamp: int) -> None:
    """Put back in the queue the jobs of workers that died mid-job (no heartbeat for a while)."""
    manager = context.app.job_manager
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=settings.JOBS_STALLED_AFTER_SECONDS):
        logger.warning("retrying stalled job %s (%s)", job.id, job.task_name)
        await manager.retry_job(job)


@app.task(name="core.jobs_ping", queue="maintenance")
async def jobs_ping() -> None:
    """Does nothing: ``manage.py jobs_check`` times a round trip through the queue with it."""


def job_round_trip(*, timeout: float) -> bool:
    """Defer ``core.jobs_ping`` (committed at once) and wait until a worker has run it."""
    with transaction.atomic():
        job_id = app.tasks["core.jobs_ping"].defer()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ProcrastinateJob.objects.filter(id=job_id).values_list("status", flat=True).first()
        if status == "succeeded":
            return True
        time.sleep(0.002)
    return False


# --- Workers ----------------------------------------------------------------------------------


def worker_run(*, concurrency: int, queues: list[str] | None = None, name: str | None = None) -> None:
    """Run a job worker in the foreground until SIGINT or SIGTERM (jobs in progress finish first).

    The worker's own connections (job fetching, LISTEN/NOTIFY) come from a small pool of its own;
    the jobs' ORM queries draw from Django's pool, one connection per running job.
    """
    asyncio.run(_worker(concurrency=concurrency, queues=queues, name=name))


async def _worker(*, concurrency: int, queues: list[str] | None, name: str | None) -> None:
    params = await sync_to_async(connector_params)()
    connector = PsycopgConnector(kwargs=params, min_size=1, max_size=2, name="strata-jobs")
    with app.replace_connector(connector):
        async with app.open_async():
            await app.run_worker_async(
                concurrency=concurrency,
                queues=queues,
                name=name,
                update_heartbeat_interval=settings.JOBS_HEARTBEAT_SECONDS,
                stalled_worker_timeout=settings.JOBS_STALLED_AFTER_SECONDS,
                shutdown_graceful_timeout=settings.JOBS_SHUTDOWN_GRACE_SECONDS,
                install_signal_handlers=True,
            )


class _EagerContext:
    """What a task sees of its job when it runs eagerly: a first attempt."""

    def __init__(self, task: Task[..., Any, ...], kwargs: dict[str, Any]) -> None:
        self.job = Job(
            id=None, queue=task.queue, lock=None, queueing_lock=None, task_name=task.name, task_kwargs=kwargs
        )


def _run_eagerly(task: Task[..., Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        if task.pass_context:
            task.func(_EagerContext(task, kwargs), **kwargs)
        else:
            task.func(**kwargs)
    except Exception:
        logger.exception("eager job %s failed", task.name)
