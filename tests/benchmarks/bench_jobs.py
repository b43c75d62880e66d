"""Durable jobs (procrastinate, real `manage.py worker` processes) against the old in-process thread
pool measured in the same run: no-op round trip, jobs per second with 1 and 2 workers (no-op and
one-chunk ingestion), and upload-to-ready."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import connection, transaction
from django_tenants.utils import tenant_context
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateJob

from ai.models import Document
from ai.services.documents import INGEST_JOB, document_create, document_ingest
from tests.ai.factories import world_create
from tests.benchmarks.baselines import InProcessPool
from tests.benchmarks.conftest import print_table, summary
from tests.processes import committed, live_database_url, manage_py_process, process_stop, wait_until

ROUND_TRIPS = 100
NOOP_JOBS = 1000
INGEST_JOBS = 100
UPLOADS = 30
GOAL_ROUND_TRIP_MS = 50
GOAL_NOOP_PER_SECOND = 200


def start_workers(count: int, tmp_path: Path) -> list:
    env = {
        "DATABASE_URL": live_database_url(),
        "TASK_MODE": "queue",
        "TENANT_SPARE_SCHEMAS": "0",
        "LOG_LEVEL": "INFO",
        "EMBEDDING_TORCH_THREADS": "1",
    }
    logs = [tmp_path / f"w{count}-{n}.log" for n in range(count)]
    workers = [
        manage_py_process("worker", "--concurrency", "4", "--name", f"bench{n}", env=env, log=log)
        for n, log in enumerate(logs)
    ]
    # Measured once every worker is warm: each loads the embedding model at start, seconds of CPU
    # that would otherwise land in the first measurements (and twice over with two workers).
    wait_until(lambda: all("embedding model warm" in log.read_text() for log in logs), timeout=180, what="warm")
    committed(wait_done, [committed(defer_pings, 1)[0]], timeout=120)
    return workers


def jobs_table_fresh() -> None:
    """Each phase starts from the same table: the finished jobs of the last phase deleted and
    vacuumed. Thousands of dead row versions (two updates per job) slow every fetch until
    autovacuum passes, and would make whichever phase runs second look slower."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM procrastinate_jobs WHERE status = 'succeeded'")
        cursor.execute("VACUUM (ANALYZE) procrastinate_jobs")


def defer_pings(count: int) -> list[int]:
    with transaction.atomic():
        return [app.tasks["core.jobs_ping"].defer() for _ in range(count)]


def wait_done(job_ids: list[int], timeout: float = 300, every: float = 0.002) -> None:
    """Poll until the jobs succeeded: every 2 ms for a round trip; a throughput run polls less
    often so the benchmark's own queries do not take CPU from the workers it measures."""
    deadline = time.monotonic() + timeout
    while ProcrastinateJob.objects.filter(id__in=job_ids).exclude(status="succeeded").exists():
        if time.monotonic() > deadline:
            raise AssertionError("jobs did not finish")
        time.sleep(every)


def round_trips() -> list[float]:
    times = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        wait_done(defer_pings(1))
        times.append((time.perf_counter() - started) * 1000)
    return times


def per_second(count: int, run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return count / (time.perf_counter() - started)


def create_documents(tenant, count: int, *, prefix: str) -> list[int]:  # noqa: ANN001
    with tenant_context(tenant), transaction.atomic():
        return [
            document_create(user=None, title=f"{prefix} {n}", content=f"{prefix} note {n}: the rota changes weekly.").id
            for n in range(count)
        ]


def ingest_job_ids(tenant, document_ids: list[int]) -> list[int]:  # noqa: ANN001
    return list(
        ProcrastinateJob.objects.filter(
            task_name=INGEST_JOB, args__schema_name=tenant.schema_name, args__document_id__in=document_ids
        ).values_list("id", flat=True)
    )


def wait_ready(tenant, document_id: int, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    with tenant_context(tenant):
        while Document.objects.filter(id=document_id).exclude(status=Document.Status.READY).exists():
            if time.monotonic() > deadline:
                raise AssertionError("document not ready")
            time.sleep(0.002)


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_jobs_round_trip_throughput_and_upload_to_ready(db, settings, tmp_path):
    settings.TASK_MODE = "queue"
    world = committed(world_create, "Bench")
    tenant = world.tenant
    rows: list[list[object]] = []

    # --- the old in-process pool (2 threads), same work -----------------------------------------
    pool = InProcessPool(workers=2)
    old_trips = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        pool.submit(lambda: None, schema_name=tenant.schema_name).result()
        old_trips.append((time.perf_counter() - started) * 1000)
    old_noop = per_second(
        NOOP_JOBS,
        lambda: pool.wait([pool.submit(lambda: None, schema_name=tenant.schema_name) for _ in range(NOOP_JOBS)]),
    )
    ids = committed(create_documents, tenant, INGEST_JOBS, prefix="Old")
    old_ingest = per_second(
        INGEST_JOBS,
        lambda: pool.wait([pool.submit(document_ingest, schema_name=tenant.schema_name, document_id=i) for i in ids]),
    )
    old_ready = []
    for n in range(UPLOADS):
        started = time.perf_counter()
        (document_id,) = committed(create_documents, tenant, 1, prefix=f"Old upload {n}")
        pool.submit(document_ingest, schema_name=tenant.schema_name, document_id=document_id).result()
        old_ready.append((time.perf_counter() - started) * 1000)
    pool.shutdown()

    # --- procrastinate with 1 and 2 worker processes ---------------------------------------------
    results = {}
    for count in (1, 2):
        committed(jobs_table_fresh)
        workers = start_workers(count, tmp_path)
        try:
            trips = committed(round_trips)
            noop = per_second(NOOP_JOBS, lambda: committed(wait_done, committed(defer_pings, NOOP_JOBS), every=0.02))
            documents = committed(create_documents, tenant, INGEST_JOBS, prefix=f"Queued{count}")
            ingest = per_second(
                INGEST_JOBS,
                lambda documents=documents: committed(wait_done, committed(ingest_job_ids, tenant, documents)),
            )
            ready = []
            for n in range(UPLOADS):
                started = time.perf_counter()
                (document_id,) = committed(create_documents, tenant, 1, prefix=f"Upload{count} {n}")
                committed(wait_ready, tenant, document_id)
                ready.append((time.perf_counter() - started) * 1000)
            results[count] = (trips, noop, ingest, ready)
        finally:
            for worker in workers:
                process_stop(worker)

    old_p50, old_p95, _ = summary(old_trips)
    rows.append(["in-process pool, 2 threads (old)", old_p50, old_p95, old_noop, old_ingest, summary(old_ready)[0]])
    for count, (trips, noop, ingest, ready) in results.items():
        p50, p95, _ = summary(trips)
        rows.append([f"procrastinate, {count} worker(s) x 4", p50, p95, noop, ingest, summary(ready)[0]])
    print_table(
        f"Jobs: round trip over {ROUND_TRIPS} no-op jobs (ms), throughput over {NOOP_JOBS} no-op and "
        f"{INGEST_JOBS} one-chunk ingestions (jobs/s), upload-to-ready over {UPLOADS} documents (ms)",
        ["runner", "round trip p50", "round trip p95", "no-op jobs/s", "ingestions/s", "upload-to-ready p50"],
        rows,
    )
    two_p50 = summary(results[2][0])[0]
    print(
        f"goals: round trip p50 < {GOAL_ROUND_TRIP_MS} ms -> {'met' if two_p50 < GOAL_ROUND_TRIP_MS else 'NOT met'};"
        f" >= {GOAL_NOOP_PER_SECOND} no-op jobs/s with 2 workers -> "
        f"{'met' if results[2][1] >= GOAL_NOOP_PER_SECOND else 'NOT met'}"
    )
    # Two workers must never be slower than one (issue 26, item 7: a fetch plan cached while the
    # queue was empty made either phase 5-15x slower at random; core.platform.jobs.worker_connector).
    ratio = results[2][1] / results[1][1]
    print(f"no-op jobs/s, 2 workers / 1 worker: {ratio:.2f} -> {'met' if ratio >= 1 else 'NOT met'} (>= 1)")
    assert two_p50 < GOAL_ROUND_TRIP_MS
    assert results[2][1] >= GOAL_NOOP_PER_SECOND
