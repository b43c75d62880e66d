"""Memory of the processes as deployed (deploy/Procfile): a web worker after its first embeddings and a
job worker after an ingestion, the figures behind the Kubernetes requests and limits."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from tests.benchmarks.conftest import print_table
from tests.processes import database_backends_end, free_port, procfile_argv, running, wait_for
from tests.processes import live_database_url as database_url

WEB_WORKERS = 2
# One embedding runtime (ONNX Runtime, no torch): a web worker measured 612 MB RSS with both runtimes.
WEB_WORKER_RSS_GOAL_MB = 350
PARAGRAPH = "Strata keeps every organisation's documents in its own schema and answers from them. "


def memory(process: psutil.Process) -> tuple[float, float, float]:
    info = process.memory_full_info()
    return info.rss / 2**20, info.uss / 2**20, info.pss / 2**20


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.django_db
def test_memory_of_a_web_worker_and_a_job_worker(django_db_setup, django_db_blocker):
    acme = django_db_setup["acme"]
    port = free_port()
    env = {
        "DATABASE_URL": database_url(),
        "PORT": str(port),
        "WEB_CONCURRENCY": str(WEB_WORKERS),
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "JOBS_WORKER_CONCURRENCY": "2",
        "TASK_MODE": "queue",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
    }
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
