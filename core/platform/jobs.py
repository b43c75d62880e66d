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
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context
from procrastinate import JobContext, PsycopgConnector, RetryStrategy
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob
from procrastinate.contrib.django.utils import connector_params
from procrastinate.exceptions import AlreadyEnqueued, JobAborted, UniqueViolation
from procrastinate.jobs import Job, JobDeferrer, Status
from procrastinate.tasks import Task
from procrastinate.worker import Worker

from core.platform.database.embedded import embedded_server_stop

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "Job",
    "JobAborted",
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
    ``TransientJobError`` would still be retried) when it is given ``pass_final_attempt=True``,
    and ``should_stop`` (true once the worker shuts down and its grace is nearly over: save what
    is done and raise ``JobAborted``, which a retry strategy listing it runs again) when it is
    given ``pass_should_stop=True``.

    ``fair=True`` shares the workers between tenants: each tenant runs one such job at a time
    (a procrastinate ``lock`` per task and schema), and a tenant's queued jobs are ordered
    behind other tenants' (see ``tenant_job_defer``). One tenant's backlog then holds at most
    one of a worker's slots, which is why JOBS_WORKER_CONCURRENCY is at least 2.
    """
    pass_final_attempt = options.pop("pass_final_attempt", False)
    pass_should_stop = options.pop("pass_should_stop", False)
    fair = options.pop("fair", False)

    def decorator(func: Callable[..., R]) -> Task[..., R, ...]:
        def run(context: JobContext, /, *, schema_name: str, **kwargs: Any) -> R:
            if not schema_name or schema_name == get_public_schema_name():
                raise TenantJobError(f"{task.name} is a tenant job and needs a tenant schema, not {schema_name!r}.")
            if pass_final_attempt:
                kwargs["final_attempt"] = not _will_retry(task, context.job)
            if pass_should_stop:
                kwargs["should_stop"] = context.should_abort
            with schema_context(schema_name):
                return func(**kwargs)

        functools.update_wrapper(run, func)  # its name and module name the task; run keeps its type
        task = app.task(pass_context=True, **options)(run)
        _TENANT_TASKS.add(task.name)
        if fair:
            _FAIR_TASKS.add(task.name)
        return task

    return decorator


def public_task(**options: Any) -> Callable[[Callable[..., R]], Task[..., R, ...]]:
    """Register ``func`` as a job that works in ``public`` (platform-wide: billing, spares, mail)."""

    def decorator(func: Callable[..., R]) -> Task[..., R, ...]:
        def run(*args: Any, **kwargs: Any) -> R:
            with schema_context(get_public_schema_name()):
                return func(*args, **kwargs)

        functools.update_wrapper(run, func)
        task: Task[..., R, ...] = app.task(**options)(run)
        return task

    return decorator


_TENANT_TASKS: set[str] = set()
_FAIR_TASKS: set[str] = set()


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
    deferrer = _fair_configure(task, schema_name=kwargs["schema_name"]) if name in _FAIR_TASKS else task
    if task.queueing_lock is None:
        deferrer.defer(**kwargs)
        return
    # One such job waiting is enough. The refusal is a unique violation, which would abort the
    # caller's whole transaction: a savepoint keeps it to this statement.
    try:
        with transaction.atomic():
            deferrer.defer(**kwargs)
    except AlreadyEnqueued:
        logger.debug("%s is already queued", name)


def _fair_configure(task: Task[..., Any, ...], *, schema_name: str) -> JobDeferrer:
    """One job of this task per tenant at a time, and round-robin between tenants.

    procrastinate runs a ``lock``'s jobs one at a time, in priority then id order, and a worker
    fetches by priority then id. Giving a tenant's n-th waiting job priority -n puts every
    tenant's next job ahead of any tenant's second: a tenant with one small upload waits for
    a free slot, never behind another tenant's backlog.
    """
    lock = f"{task.name}:{schema_name}"
    waiting = ProcrastinateJob.objects.filter(lock=lock, status="todo").count()
    return task.configure(lock=lock, priority=-waiting)


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
        try:
            await manager.retry_job(job)
        except UniqueViolation as exc:
            if exc.queueing_lock is None:
                logger.exception("could not retry stalled job %s (%s)", job.id, job.task_name)
                continue
            # Another copy is already waiting under the same queueing lock: that one runs.
            logger.info("stalled job %s (%s) is already queued again", job.id, job.task_name)
            await manager.finish_job(job, status=Status.ABORTED, delete_job=False)
        except Exception:  # one job's trouble does not keep the others stalled
            logger.exception("could not retry stalled job %s (%s)", job.id, job.task_name)


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
    """Run a job worker in the foreground until SIGINT or SIGTERM.

    The worker outlives the database: when PostgreSQL restarts (procrastinate stops a worker
    whose listener or heartbeat loses its connection), it reconnects with backoff and goes on.
    On SIGINT or SIGTERM it stops within JOBS_SHUTDOWN_GRACE_SECONDS: running jobs have most
    of that grace to finish, are then asked to stop (``should_stop``; an interrupted job is
    retried), and if one still runs when the grace is over the process exits anyway, giving
    its jobs back to the queue first.

    The worker's own connections (job fetching, LISTEN/NOTIFY) come from a small pool of its own;
    the jobs' ORM queries draw from Django's pool, one connection per running job.
    """
    asyncio.run(_worker(concurrency=concurrency, queues=queues, name=name))


class _Shutdown:
    """SIGINT/SIGTERM for a worker process: the first starts a graceful stop, later ones are the
    same request (procrastinate's own handlers go away after one signal, so a second SIGTERM
    from a supervisor would kill the process before it had let go of anything)."""

    def __init__(self, *, grace: float) -> None:
        self.grace = grace
        # What running jobs get to finish on their own before they are asked to stop.
        self.jobs_grace = max(grace - min(5.0, grace / 2), 0.0)
        self.requested = asyncio.Event()
        self.worker: Worker | None = None
        self.worker_ids: set[int] = set()

    def request(self) -> None:
        if self.requested.is_set():
            return
        logger.info("job worker stopping (jobs in progress get %.0f s)", self.jobs_grace)
        self.requested.set()
        if self.worker is not None:
            self.worker.stop()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated
        deadline = threading.Timer(max(self.grace - 0.5, 0.1), self._exit_now)
        deadline.daemon = True
        deadline.start()

    def _exit_now(self) -> None:  # pragma: no cover - exercised by a real process in the tests
        """The grace is over and a job still runs (a thread cannot be interrupted): give this
        worker's jobs back and leave, as the orchestrator's SIGKILL would, only cleaner."""
        logger.error("job worker: jobs still running after %.0f s of grace, exiting now", self.grace)
        worker = self.worker
        if worker is not None:
            running = [context.job.id for context in list(worker._running_jobs.values()) if context.job.id]
            _jobs_give_back(running)
            if worker.worker_id is not None:
                self.worker_ids.add(worker.worker_id)
        _workers_unregister(self.worker_ids)
        _embedded_database_release()
        sys.stderr.flush()
        os._exit(1)

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.requested.wait(), seconds)


async def _worker(*, concurrency: int, queues: list[str] | None, name: str | None) -> None:
    shutdown = _Shutdown(grace=settings.JOBS_SHUTDOWN_GRACE_SECONDS)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.request)
    params = await sync_to_async(connector_params)()
    delay = settings.JOBS_RECONNECT_MIN_SECONDS
    while not shutdown.requested.is_set():
        started = time.monotonic()
        try:
            await _database_reachable(params)
            connector = worker_connector(params)
            with app.replace_connector(connector):
                async with app.open_async():
                    worker = Worker(
                        app=app,
                        concurrency=concurrency,
                        queues=queues,
                        name=name,
                        update_heartbeat_interval=settings.JOBS_HEARTBEAT_SECONDS,
                        stalled_worker_timeout=settings.JOBS_STALLED_AFTER_SECONDS,
                        shutdown_graceful_timeout=shutdown.jobs_grace,
                        install_signal_handlers=False,
                        task_middleware=[_job_connections_fresh],
                    )
                    shutdown.worker = worker
                    # Worker.run() forgets a stop requested before it started: repeat it after.
                    stopper = asyncio.create_task(_stop_when_requested(shutdown, worker))
                    try:
                        await worker.run()  # type: ignore[no-untyped-call]
                    finally:
                        stopper.cancel()
                    problem = "a side task (listener, heartbeat) failed"
        except Exception as exc:  # noqa: BLE001 - the database went away; the loop is the recovery
            problem = f"{exc.__class__.__name__}: {exc}"
        finally:
            if shutdown.worker is not None and shutdown.worker.worker_id is not None:
                shutdown.worker_ids.add(shutdown.worker.worker_id)  # not unregistered: hand back later
            shutdown.worker = None
        if shutdown.requested.is_set():
            break
        # The jobs' pooled connections died with the server too: start the pool afresh.
        await sync_to_async(connection.close_pool)()  # type: ignore[attr-defined]  # psycopg backend only
        if time.monotonic() - started > settings.JOBS_RECONNECT_MAX_SECONDS:
            delay = settings.JOBS_RECONNECT_MIN_SECONDS  # it ran a good while: a fresh outage
        logger.warning("job worker stopped (%s); reconnecting in %.1f s", problem, delay)
        await shutdown.wait(delay)
        delay = min(delay * 2, settings.JOBS_RECONNECT_MAX_SECONDS)
    # A worker that lost the database could not unregister: its jobs go back to the queue now
    # rather than when the stalled-job check notices its silence.
    if shutdown.worker_ids:
        await sync_to_async(_workers_unregister)(shutdown.worker_ids)


def worker_connector(params: dict[str, Any]) -> PsycopgConnector:
    """The worker's own small pool (job fetching, status, heartbeat), planning each query afresh.

    procrastinate fetches a job in a PL/pgSQL function, whose query plan PostgreSQL caches per
    connection after a few calls. Cached while the jobs table was nearly empty (a quiet queue,
    after pruning), it is a nested loop of sequential scans, quadratic in the queued jobs: a
    burst of 1,000 jobs then costs 100-400 ms per fetch instead of 1-3 ms, until autovacuum's
    next ANALYZE, up to a minute later. Planning each time costs well under a millisecond.
    """
    options = f"{params.get('options', '')} -c plan_cache_mode=force_custom_plan".strip()
    return PsycopgConnector(kwargs={**params, "options": options}, min_size=1, max_size=2, name="strata-jobs")


def _job_connections_fresh(call_next: Callable[[], R], context: Any, worker: Any) -> R:
    """A sync job starts on a sound connection and gives it back to the pool when it ends
    (no request cycle does this in a worker): a server restart leaves no dead one behind."""
    close_old_connections()
    try:
        return call_next()
    finally:
        close_old_connections()


async def _stop_when_requested(shutdown: _Shutdown, worker: Worker) -> None:
    await shutdown.requested.wait()
    worker.stop()  # type: ignore[no-untyped-call]


async def _database_reachable(params: dict[str, Any]) -> None:
    """Raise unless PostgreSQL accepts a connection now (procrastinate's pool would wait 30 s)."""
    probe = await psycopg.AsyncConnection.connect(**{**params, "connect_timeout": 5}, autocommit=True)
    await probe.close()


def _jobs_give_back(job_ids: list[int]) -> None:
    """Put jobs this process is abandoning back in the queue, as procrastinate's own retry does."""
    try:
        with psycopg.connect(**connector_params(), autocommit=True, connect_timeout=2) as conn:
            for job_id in job_ids:
                try:
                    conn.execute("SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)", [job_id])
                except psycopg.errors.UniqueViolation:
                    logger.info("abandoned job %s is already queued again", job_id)
    except Exception:  # noqa: BLE001 - best effort; the stalled-job check is the fallback
        logger.warning("could not give back jobs %s", job_ids, exc_info=True)


def _workers_unregister(worker_ids: set[int]) -> None:
    """Delete these workers' rows: their jobs still ``doing`` count as stalled at once."""
    if not worker_ids:
        return
    try:
        with psycopg.connect(**connector_params(), autocommit=True, connect_timeout=2) as conn:
            conn.execute("DELETE FROM procrastinate_workers WHERE id = ANY(%s)", [list(worker_ids)])
    except Exception:  # noqa: BLE001 - best effort; the stalled-job check is the fallback
        logger.warning("could not unregister job worker(s) %s", sorted(worker_ids), exc_info=True)


def worker_process_exit(code: int = 0) -> None:
    """End a worker process now that its worker has stopped: let go of the embedded database,
    flush the logs and leave without the interpreter's teardown of native libraries (PyTorch's
    takes seconds, which would break the shutdown grace)."""
    _embedded_database_release()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _embedded_database_release() -> None:
    pgdata = settings.DATABASES["default"].get("EMBEDDED_PGDATA")
    if pgdata:
        embedded_server_stop(Path(pgdata))


class _EagerContext:
    """What a task sees of its job when it runs eagerly: a first attempt."""

    def __init__(self, task: Task[..., Any, ...], kwargs: dict[str, Any]) -> None:
        self.job = Job(
            id=None, queue=task.queue, lock=None, queueing_lock=None, task_name=task.name, task_kwargs=kwargs
        )

    def should_abort(self) -> bool:
        return False


def _run_eagerly(task: Task[..., Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        if task.pass_context:
            task.func(_EagerContext(task, kwargs), **kwargs)
        else:
            task.func(**kwargs)
    except Exception:
        logger.exception("eager job %s failed", task.name)
