"""Background jobs as they run in production: real `manage.py worker` processes against the test
database, jobs deferred in the same transaction as their rows, killed workers, periodic jobs.

The workers embed through the hosted backend (EMBEDDING_BACKEND=voyage, the real SDK) against its
wire-level fake, which answers after a hosted model's latency: these tests are about jobs (who runs
what, once, in which schema, after which fault), and the local model would make each of them
minutes of CPU beside the other test worker. Ingestion on the local model is tested in tests/ai."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.db import connection, transaction
from django_tenants.utils import schema_context, tenant_context
from procrastinate.contrib.django.models import ProcrastinateJob

from ai.models import Chunk, Document
from ai.services.documents import INGEST_JOB, document_create
from tests.ai.factories import owner_reader, world_create
from tests.fakes.voyage_server import DEFAULT_API_KEY, FakeVoyage
from tests.processes import committed, live_database_url, manage_py_process, process_stop, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


@pytest.fixture
def queued(settings):  # noqa: ANN001
    """Jobs go to PostgreSQL for real (unit tests otherwise run them eagerly)."""
    settings.TASK_MODE = "queue"


# An embedding request of a batch takes this long upstream: a long document is seconds of waiting.
UPSTREAM_LATENCY_SECONDS = 0.05
VOYAGE = FakeVoyage()


@pytest.fixture(scope="module", autouse=True)
def voyage() -> Iterator[FakeVoyage]:
    with VOYAGE:
        VOYAGE.latency = UPSTREAM_LATENCY_SECONDS
        yield VOYAGE


@pytest.fixture
def instant_upstream(voyage: FakeVoyage) -> Iterator[None]:
    voyage.latency = 0.0
    yield
    voyage.latency = UPSTREAM_LATENCY_SECONDS


@pytest.fixture(scope="module")
def tenants(django_db_setup, django_db_blocker):  # noqa: ANN001
    with django_db_blocker.unblock():
        return [world_create(f"Jobs{i}") for i in range(20)]


def worker_env(**overrides: str) -> dict[str, str]:
    return {
        "DATABASE_URL": live_database_url(),
        "TASK_MODE": "queue",
        "LOG_LEVEL": "WARNING",
        "EMBEDDING_BACKEND": "voyage",
        "EMBEDDING_MODEL": "voyage-3.5-lite",
        "VOYAGE_API_KEY": DEFAULT_API_KEY,
        "VOYAGE_BASE_URL": VOYAGE.base_url,
        "DB_APPLICATION_NAME": "strata-test-worker",
        "TENANT_SPARE_SCHEMAS": "0",
        **overrides,
    }


def start_worker(tmp_path: Path, name: str, **overrides: str):  # noqa: ANN201
    return manage_py_process(
        "worker", "--concurrency", "2", "--name", name, env=worker_env(**overrides), log=tmp_path / f"{name}.log"
    )


def create_document(tenant, title: str, content: str) -> int:  # noqa: ANN001
    with tenant_context(tenant), transaction.atomic():
        return document_create(user=None, reader=owner_reader(tenant), title=title, content=content).id


def ingest_jobs() -> list[dict]:
    return list(ProcrastinateJob.objects.filter(task_name=INGEST_JOB).values("id", "status", "attempts", "args"))


def test_a_committed_document_has_its_job_and_a_rolled_back_one_has_none(tenants, queued):
    tenant = tenants[0].tenant

    def rolled_back() -> None:
        with tenant_context(tenant), transaction.atomic():
            document_create(
                user=None, reader=owner_reader(tenant), title="Never", content="This upload is rolled back."
            )
            transaction.set_rollback(True)

    before = committed(lambda: ProcrastinateJob.objects.filter(task_name=INGEST_JOB).count())
    committed(rolled_back)
    assert committed(lambda: ProcrastinateJob.objects.filter(task_name=INGEST_JOB).count()) == before

    document_id = committed(create_document, tenant, "Kept", "This upload is committed.")
    jobs = committed(ingest_jobs)
    assert {"document_id": document_id, "schema_name": tenant.schema_name} in [job["args"] for job in jobs]


def test_two_workers_run_500_jobs_over_20_tenants_each_once_in_its_own_schema(
    tenants, queued, tmp_path, instant_upstream
):
    per_tenant = 25
    expected: dict[str, dict[int, str]] = {}

    def create_all() -> None:
        for world in tenants:
            with tenant_context(world.tenant), transaction.atomic():
                expected[world.tenant.schema_name] = {
                    document_create(
                        user=None,
                        reader=owner_reader(world.tenant),
                        title=f"{world.tenant.name} {n}",
                        content=f"Only {world.tenant.name} note {n}.",
                    ).id: f"Only {world.tenant.name} note {n}."
                    for n in range(per_tenant)
                }

    committed(create_all)
    workers = [start_worker(tmp_path, "a"), start_worker(tmp_path, "b")]
    try:
        ours = {(schema, doc) for schema, docs in expected.items() for doc in docs}

        def finished() -> bool:
            done = {
                (job["args"]["schema_name"], job["args"]["document_id"])
                for job in ingest_jobs()
                if job["status"] == "succeeded"
            }
            return ours <= done

        wait_until(lambda: committed(finished), timeout=240, every=1, what="all 500 ingestion jobs done")
    finally:
        for worker in workers:
            process_stop(worker)

    jobs = [job for job in committed(ingest_jobs) if (job["args"]["schema_name"], job["args"]["document_id"]) in ours]
    assert len(jobs) == 500
    assert all(job["status"] == "succeeded" and job["attempts"] == 1 for job in jobs)  # each ran exactly once

    def rows_by_schema() -> dict[str, list[tuple[int, str, str, int]]]:
        rows = {}
        for schema in expected:
            with schema_context(schema):
                rows[schema] = [
                    (chunk.document_id, chunk.text, chunk.document.status, chunk.document.chunk_count)
                    for chunk in Chunk.objects.filter(document_id__in=expected[schema]).select_related("document")
                ]
        return rows

    for schema, rows in committed(rows_by_schema).items():
        # Every document of this schema was ingested here, once, from its own text: a job that ran
        # in another tenant's schema would have chunked that tenant's document with the same id.
        assert sorted(document_id for document_id, *_ in rows) == sorted(expected[schema])
        assert all(text == expected[schema][document_id] for document_id, text, _, _ in rows)
        assert all(status == Document.Status.READY and count == 1 for _, _, status, count in rows)


def test_a_worker_killed_mid_ingestion_is_replaced_and_the_document_is_ready_once(tenants, queued, tmp_path):
    tenant = tenants[1].tenant
    long_text = "\n\n".join(
        f"Section {n}. The maintenance window for system {n} opens on day {n % 28 + 1} at {n % 24}:00 and "
        f"lasts {n % 5 + 1} hours; the on-call engineer for it is number {n * 7 % 101}." * 4
        for n in range(150)
    )
    fast_stall = {
        "JOBS_HEARTBEAT_SECONDS": "1",
        "JOBS_STALLED_AFTER_SECONDS": "3",
        "JOBS_STALLED_CHECK_CRON": "* * * * * *",  # every second
    }
    first = start_worker(tmp_path, "doomed", **fast_stall)
    try:
        document_id = committed(create_document, tenant, "Maintenance windows", long_text)

        def doing() -> bool:
            return any(
                job["status"] == "doing"
                and job["args"]["document_id"] == document_id
                and job["args"]["schema_name"] == tenant.schema_name
                for job in ingest_jobs()
            )

        wait_until(lambda: committed(doing), timeout=60, every=0.05, what="the ingestion job started")

        def chunks_stored() -> bool:
            with tenant_context(tenant):
                return Chunk.objects.filter(document_id=document_id).exists()

        wait_until(lambda: committed(chunks_stored), timeout=60, every=0.05, what="chunks stored, embedding under way")
        psutil.Process(first.pid).kill()  # kill -9, mid-job
        first.wait(10)
    finally:
        process_stop(first)

    second = start_worker(tmp_path, "rescuer", **fast_stall)
    try:

        def status() -> str:
            with tenant_context(tenant):
                return Document.objects.get(id=document_id).status

        wait_until(lambda: committed(status) == Document.Status.READY, timeout=180, every=0.5, what="document ready")
    finally:
        process_stop(second)

    def outcome() -> tuple[list[dict], int, int, int]:
        jobs = [
            job
            for job in ingest_jobs()
            if job["args"] == {"document_id": document_id, "schema_name": tenant.schema_name}
        ]
        with tenant_context(tenant):
            document = Document.objects.get(id=document_id)
            chunks = Chunk.objects.filter(document=document)
            return jobs, document.chunk_count, chunks.count(), chunks.filter(embedding__isnull=True).count()

    jobs, chunk_count, chunks, unembedded = committed(outcome)
    assert [job["status"] for job in jobs] == ["succeeded"]  # the one job, retried, finished once
    assert jobs[0]["attempts"] == 2
    assert chunk_count > 20 and chunks == chunk_count and unembedded == 0  # no duplicate chunks


def test_a_periodic_job_runs_once_per_period_with_two_workers(tenants, queued, tmp_path):
    every_second = {"JOBS_STALLED_CHECK_CRON": "* * * * * *"}
    started = int(time.time())

    def periodic_runs() -> tuple[Counter, list[str]]:
        jobs = ProcrastinateJob.objects.filter(
            task_name="core.jobs_retry_stalled", args__timestamp__gte=started
        ).values_list("args", "status")
        return Counter(args["timestamp"] for args, _ in jobs), [status for _, status in jobs]

    workers = [start_worker(tmp_path, "p1", **every_second), start_worker(tmp_path, "p2", **every_second)]
    try:
        wait_until(lambda: len(committed(periodic_runs)[0]) >= 6, timeout=90, every=0.5, what="six periods")
    finally:
        for worker in workers:
            process_stop(worker)

    per_period, statuses = committed(periodic_runs)
    assert len(per_period) >= 6, "the periodic job fired every second"
    assert set(per_period.values()) == {1}, "two workers, yet one job per period"
    assert statuses.count("succeeded") >= len(per_period) - 1  # the last may still have been queued at shutdown


def test_jobs_check_reports_a_running_worker(tenants, tmp_path):
    worker = start_worker(tmp_path, "check")
    try:
        check = manage_py_process("jobs_check", "--timeout", "60", env=worker_env(), log=tmp_path / "check.log")
        assert check.wait(90) == 0, (tmp_path / "check.log").read_text()
    finally:
        process_stop(worker)
    assert "A worker ran the job in" in (tmp_path / "check.log").read_text()


def test_jobs_check_fails_clearly_without_a_worker(tenants, tmp_path):
    check = manage_py_process("jobs_check", "--timeout", "1", env=worker_env(), log=tmp_path / "check.log")
    assert check.wait(60) != 0
    assert "is `manage.py worker` running?" in (tmp_path / "check.log").read_text()
    assert connection.schema_name == "public"


def long_text(sections: int) -> str:
    return "\n\n".join(
        f"Section {n}. The maintenance window for system {n} opens on day {n % 28 + 1} at {n % 24}:00 and "
        f"lasts {n % 5 + 1} hours; the on-call engineer for it is number {n * 7 % 101}." * 4
        for n in range(sections)
    )


def document_state(tenant, document_id: int) -> tuple[str, int, int, int]:  # noqa: ANN001
    with tenant_context(tenant):
        document = Document.objects.get(id=document_id)
        chunks = Chunk.objects.filter(document=document)
        return document.status, document.chunk_count, chunks.count(), chunks.filter(embedding__isnull=True).count()


def jobs_of(tenant, document_id: int) -> list[dict]:  # noqa: ANN001
    return [
        job for job in ingest_jobs() if job["args"] == {"document_id": document_id, "schema_name": tenant.schema_name}
    ]


def test_sigterm_mid_ingestion_stops_the_worker_within_its_grace_and_the_next_worker_finishes(
    tenants, queued, voyage, tmp_path
):
    tenant = tenants[2].tenant
    grace = 4
    # A slow upstream keeps the document embedding past the grace: 300 sections are about 200
    # chunks, 25 batches of 8 at 0.2 s each.
    voyage.latency = 0.2
    first = start_worker(
        tmp_path, "terminated", JOBS_SHUTDOWN_GRACE_SECONDS=str(grace), EMBEDDING_BATCH_SIZE="8", LOG_LEVEL="INFO"
    )
    try:
        warm = committed(create_document, tenant, "Warm-up", "The worker is up and embedding.")
        wait_until(lambda: committed(document_state, tenant, warm)[0] == Document.Status.READY, timeout=120)
        document_id = committed(create_document, tenant, "Maintenance", long_text(300))

        def chunks_stored() -> bool:
            with tenant_context(tenant):
                return Chunk.objects.filter(document_id=document_id).exists()

        wait_until(lambda: committed(chunks_stored), timeout=120, every=0.05, what="chunks stored, embedding next")
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        first.wait(60)
        stopped_after = time.monotonic() - started
    finally:
        process_stop(first)
        voyage.latency = UPSTREAM_LATENCY_SECONDS
    print(f"\nthe worker stopped {stopped_after:.1f} s after SIGTERM (grace {grace} s)")
    assert stopped_after <= grace, f"the worker took {stopped_after:.1f} s against a {grace} s grace"
    assert "ended with status: Aborted, to retry" in (tmp_path / "terminated.log").read_text(), "it stopped itself"
    status, chunk_count, chunks, unembedded = committed(document_state, tenant, document_id)
    assert status == Document.Status.PENDING and unembedded > 0, "stopped part way, and not shown ready"
    [job] = committed(jobs_of, tenant, document_id)
    assert (job["status"], job["attempts"]) == ("todo", 1), "given back to the queue, to run again"

    second = start_worker(tmp_path, "rescuer")
    try:
        wait_until(
            lambda: committed(document_state, tenant, document_id)[0] == Document.Status.READY,
            timeout=300,
            every=0.5,
            what="document ready",
        )
    finally:
        process_stop(second)
    status, chunk_count, chunks, unembedded = committed(document_state, tenant, document_id)
    assert chunk_count == chunks > 100 and unembedded == 0
    assert [job["status"] for job in committed(jobs_of, tenant, document_id)] == ["succeeded"]


def test_retrying_stalled_jobs_goes_past_a_job_already_queued_again(tenants, tmp_path):
    """A dead worker held a meter sync whose next run is already queued, and another job."""

    def stall() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
            )
            worker_id = cursor.fetchone()[0]
            ids = []
            for queue, task, lock in [
                ("billing", "billing.meter_sync", "billing.meter_sync"),
                ("maintenance", "core.jobs_ping", None),
            ]:
                cursor.execute(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, args, status, worker_id)"
                    " VALUES (%s, %s, %s, %s, 'doing', %s) RETURNING id",
                    [queue, task, lock, '{"timestamp": 1}' if lock else "{}", worker_id],
                )
                ids.append(cursor.fetchone()[0])
            cursor.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, args, status)"
                " VALUES ('billing', 'billing.meter_sync', 'billing.meter_sync', '{\"timestamp\": 2}', 'todo')"
                " ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING"
            )
        return ids[0], ids[1]

    meter_sync, ping = committed(stall)
    statuses = lambda: dict(  # noqa: E731
        ProcrastinateJob.objects.filter(id__in=[meter_sync, ping]).values_list("id", "status")
    )
    worker = manage_py_process(
        "worker",
        "--queues",
        "maintenance",
        "--name",
        "stalled",
        env=worker_env(JOBS_STALLED_AFTER_SECONDS="3", JOBS_STALLED_CHECK_CRON="* * * * * *"),
        log=tmp_path / "stalled.log",
    )
    try:
        wait_until(lambda: committed(statuses)[ping] == "succeeded", timeout=60, every=0.2, what="the ping retried")
    finally:
        process_stop(worker)
    assert committed(statuses)[meter_sync] == "aborted", "its queued copy is the one that runs"
    assert "UniqueViolation" not in (tmp_path / "stalled.log").read_text()


def test_one_tenants_pile_of_large_uploads_does_not_delay_another_tenants_small_one(tenants, queued, tmp_path):
    busy, quiet = tenants[3].tenant, tenants[4].tenant
    large = long_text(300)

    def pile() -> list[int]:
        with tenant_context(busy), transaction.atomic():
            return [
                document_create(user=None, reader=owner_reader(busy), title=f"Large {n}", content=large).id
                for n in range(20)
            ]

    committed(pile)
    worker = start_worker(tmp_path, "fair", JOBS_SHUTDOWN_GRACE_SECONDS="3")
    try:

        def busy_embedding() -> bool:
            with tenant_context(busy):
                return Chunk.objects.filter(embedding__isnull=False).exists()

        wait_until(lambda: committed(busy_embedding), timeout=120, every=0.1, what="the pile is being ingested")
        started = time.monotonic()
        small = committed(create_document, quiet, "Small", "The quiet tenant's one short note.")
        wait_until(
            lambda: committed(document_state, quiet, small)[0] == Document.Status.READY,
            timeout=60,
            every=0.1,
            what="the small document ready",
        )
        waited = time.monotonic() - started

        def busy_left() -> int:
            with tenant_context(busy):
                return Document.objects.exclude(status=Document.Status.READY).count()

        left = committed(busy_left)
    finally:
        process_stop(worker)

        def clear_pile() -> None:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM procrastinate_jobs WHERE status = 'todo' AND args->>'schema_name' = %s",
                    [busy.schema_name],
                )
            with tenant_context(busy):
                Document.objects.all().delete()

        committed(clear_pile)
    print(f"\nthe quiet tenant's small document was ready {waited:.1f} s after upload, beside a pile of 20")
    assert left > 0, "the small document was ready before the other tenant's pile was"
    # A bound that tells a turn of its own (seconds) from waiting for the pile (minutes), with the
    # other test worker busy beside it.
    assert waited < 30, f"the small document waited {waited:.1f} s behind the other tenant's pile"


def test_a_tenants_queued_documents_are_ingested_back_to_back_not_one_per_polling_interval(
    tenants, queued, tmp_path, instant_upstream
):
    """A tenant's ingestion jobs share a lock (one at a time). procrastinate fetches again only when
    a job is inserted or its 5 s polling interval passes, and a job ending frees its lock without
    either: each of a tenant's queued documents waited up to 5 s for the one before it. A job that
    ends now says so on the queue's channel (core migration 0004), and the next one starts at once."""
    tenant = tenants[5].tenant

    def queue_up() -> list[int]:
        with tenant_context(tenant), transaction.atomic():
            return [
                document_create(
                    user=None, reader=owner_reader(tenant), title=f"Queued {n}", content=f"Short note {n}."
                ).id
                for n in range(6)
            ]

    ids = committed(queue_up)
    worker = start_worker(tmp_path, "back-to-back")
    try:

        def ready() -> int:
            with tenant_context(tenant):
                return Document.objects.filter(id__in=ids, status=Document.Status.READY).count()

        wait_until(lambda: committed(ready) >= 1, timeout=120, every=0.05, what="the first document ready")
        first = time.monotonic()
        wait_until(lambda: committed(ready) == len(ids), timeout=60, every=0.05, what="every document ready")
        rest = time.monotonic() - first
    finally:
        process_stop(worker)
    print(f"\nthe other {len(ids) - 1} documents were ready {rest:.1f} s after the first")
    # Five polling intervals would be 25 s; back to back is well under a second of work each.
    assert rest < 8, f"{len(ids) - 1} short documents took {rest:.1f} s after the first"
