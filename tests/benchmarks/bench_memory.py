"""Memory of the processes as deployed (deploy/Procfile): a web worker after its first embeddings, a
job worker after an ingestion, and a job worker's memory over 1,000 documents (flat: within 10% of
its memory after the first 50), the figures behind the Kubernetes requests and limits."""

from __future__ import annotations

import os
import random
import threading
import time

import httpx
import psutil
import pytest

from tests.benchmarks.conftest import print_table
from tests.processes import database_backends_end, free_port, procfile_argv, running, wait_for
from tests.processes import live_database_url as database_url

WEB_WORKERS = 2
# One embedding runtime (ONNX Runtime, no torch): a web worker measured 612 MB RSS with both
# runtimes, 340 MB after torch left, 356-369 MB with the Anthropic SDK, 320-330 MB since the model's
# load gives its freed parse buffers back (2026-12-07; deploy/k8s/strata.yaml is sized on it).
WEB_WORKER_RSS_GOAL_MB = 350
PARAGRAPH = "Strata keeps every organisation's documents in its own schema and answers from them. "


def memory(process: psutil.Process) -> tuple[float, float, float]:
    info = process.memory_full_info()
    return info.rss / 2**20, info.uss / 2**20, info.pss / 2**20


def deployed_env(*, port: int, web_workers: int) -> dict[str, str]:
    """The Procfile's processes with production settings, on the test database."""
    return {
        "DATABASE_URL": database_url(),
        "PORT": str(port),
        "WEB_CONCURRENCY": str(web_workers),
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "JOBS_WORKER_CONCURRENCY": "2",
        "TASK_MODE": "queue",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
        # As deployed with Claude: a web worker loads the Anthropic SDK while it warms up (78 MB);
        # a job worker loads it only when a job calls the model. No call is made here.
        "ANTHROPIC_API_KEY": "sk-ant-memory-benchmark",
    }


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.django_db
def test_memory_of_a_web_worker_and_a_job_worker(django_db_setup, django_db_blocker):
    acme = django_db_setup["acme"]
    port = free_port()
    env = deployed_env(port=port, web_workers=WEB_WORKERS)
    headers = {"Host": f"{acme.tenant.subdomain}.localhost", "Authorization": f"Token {acme.owner_token}"}
    web_argv = procfile_argv("web", env, overrides={"--host": "127.0.0.1"})
    rows = []
    with django_db_blocker.unblock():
        try:
            with running(web_argv, env=env) as web:
                wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "127.0.0.1"}, timeout=240)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
                    # Every worker warms at start; enough searches that both have embedded queries.
                    for i in range(40):
                        assert http.post("/api/search/", json={"query": f"schemas {i}"}).status_code == 200
                    time.sleep(2)
                    supervisor = psutil.Process(web.pid)
                    workers = [p for p in supervisor.children() if "spawn_main" in " ".join(p.cmdline())]
                    rows.append(["web supervisor (uvicorn --workers)", *memory(supervisor)])
                    for n, worker in enumerate(workers, 1):
                        rows.append([f"web worker {n} after its first embeddings", *memory(worker)])

                    with running(procfile_argv("worker", env), env=env) as job_worker:
                        time.sleep(8)
                        rows.append(["job worker, idle", *memory(psutil.Process(job_worker.pid))])
                        document = http.post(
                            "/api/documents/", json={"title": "Memory", "content": PARAGRAPH * 400}
                        ).json()
                        deadline = time.monotonic() + 240
                        while http.get(f"/api/documents/{document['id']}/").json()["status"] != "ready":
                            assert time.monotonic() < deadline, "the job worker never ingested the document"
                            time.sleep(0.5)
                        rows.append(["job worker after an ingestion", *memory(psutil.Process(job_worker.pid))])
        finally:
            database_backends_end()

    print_table("Memory per process (MB)", ["process", "RSS", "USS", "PSS"], rows)
    assert len(workers) == WEB_WORKERS
    web_rss = [row[1] for row in rows if row[0].startswith("web worker")]
    assert max(web_rss) < WEB_WORKER_RSS_GOAL_MB, f"a web worker holds {max(web_rss):.0f} MB"


DOCUMENTS = int(os.environ.get("BENCH_MEMORY_DOCUMENTS", "1000"))
CHECKPOINTS = sorted({50, DOCUMENTS // 4, DOCUMENTS // 2, DOCUMENTS})
FLAT_GOAL = 1.10


WORDS = (
    "the organisation keeps its documents in a schema of its own and every answer reads only what the asker"
    " may read members upload contracts minutes reports and policies which are split into passages embedded"
    " and searched by meaning while the usage ledger records each token billed to the tenant that spent it"
    " operators watch plans invoices and the health of the model calls from the admin pages every night"
).split()


def text_file(n: int) -> str:
    """A text of its own (no two documents alike), 2-4 KB of plain English words: 1,000 of them
    ingest in minutes on two cores, and each is still a whole ingestion job (read, chunk, store,
    embed, mark ready), which is where a per-document leak would show."""
    rng = random.Random(n)
    size = rng.randint(2_000, 4_000)
    sentences: list[str] = [f"Document {n}. "]
    while sum(len(sentence) for sentence in sentences) < size:
        sentences.append(" ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize() + ". ")
    return "".join(sentences)


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.django_db
def test_a_job_workers_memory_stays_flat_over_a_thousand_documents(django_db_setup, django_db_blocker):
    """One job worker (concurrency 2, as deployed) ingests DOCUMENTS real-sized texts uploaded
    through the API; its memory is read when it has finished the first 50 and at each checkpoint
    after (idle then: what it keeps, not what a job holds while it runs)."""
    from django_tenants.utils import tenant_context

    from ai.models import Document

    acme = django_db_setup["acme"]
    port = free_port()
    env = deployed_env(port=port, web_workers=1)
    headers = {"Host": f"{acme.tenant.subdomain}.localhost", "Authorization": f"Token {acme.owner_token}"}
    rows = []
    started = time.monotonic()

    def ready() -> int:
        with tenant_context(acme.tenant):
            return Document.objects.filter(title__startswith="Flat ", status="ready").count()

    peak = [0.0]
    sampling = threading.Event()

    def sample_peak(process: psutil.Process) -> None:
        """The job worker's highest RSS, read every 0.2 s while it works (jobs hold more than idle)."""
        while not sampling.wait(0.2):
            try:
                peak[0] = max(peak[0], process.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                return

    with django_db_blocker.unblock():
        try:
            web_argv = procfile_argv("web", env, overrides={"--host": "127.0.0.1"})
            with running(web_argv, env=env), running(procfile_argv("worker", env), env=env) as job_worker:
                wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "127.0.0.1"}, timeout=240)
                worker = psutil.Process(job_worker.pid)
                threading.Thread(target=sample_peak, args=(worker,), daemon=True).start()
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
                    uploaded = 0
                    for checkpoint in CHECKPOINTS:
                        while uploaded < checkpoint:
                            uploaded += 1
                            body = {"title": f"Flat {uploaded}", "content": text_file(uploaded)}
                            assert http.post("/api/documents/", json=body).status_code == 201
                        deadline = time.monotonic() + 1800
                        while ready() < checkpoint:
                            assert worker.is_running(), "the job worker died"
                            assert time.monotonic() < deadline, f"{ready()} of {checkpoint} documents ingested"
                            time.sleep(1)
                        time.sleep(2)  # the last job's reply and bookkeeping
                        rows.append([f"job worker after {checkpoint} documents", *memory(worker)])
                        rows[-1].append(f"{time.monotonic() - started:.0f} s")
                        print(rows[-1], flush=True)
        finally:
            sampling.set()
            database_backends_end()

    print_table(
        f"A job worker's memory over {DOCUMENTS} documents of 2-4 KB (MB; concurrency 2)",
        ["process", "RSS", "USS", "PSS", "elapsed"],
        rows,
    )
    after_first, after_all = rows[0][1], rows[-1][1]
    print(f"RSS after {CHECKPOINTS[-1]} / after 50: {after_all / after_first:.2f} (goal <= {FLAT_GOAL})")
    print(f"the job worker's highest RSS while it worked: {peak[0]:.0f} MB")
    assert after_all <= after_first * FLAT_GOAL
