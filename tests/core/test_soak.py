"""Soak: a live uvicorn and a job worker on the test database, 20 tenants, mixed traffic (API reads
and writes, uploads, search, static files, tenant admin pages, WebSocket chats) for half a minute in the
suite (STRATA_SOAK_SECONDS sets it: tests/benchmarks/README.md runs it for half an hour).
Zero 5xx, and the PostgreSQL backends the processes hold never exceed their configured pools."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
from collections import Counter

import httpx
import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django_tenants.utils import tenant_context

from ai.models import Document
from tests.ai.chat_client import ask, ws_connect
from tests.ai.factories import world_create
from tests.processes import ServedProcess, committed, live_database_url, manage_py_process, process_stop

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

SOAK_SECONDS = float(os.environ.get("STRATA_SOAK_SECONDS", "30"))
CLIENTS = 16
WEB_POOL, WORKER_POOL, WORKER_CONCURRENCY = 8, 3, 2
# The worker's own connections besides its jobs' pool: procrastinate's pool (2) and its LISTEN connection.
WORKER_QUEUE_CONNECTIONS = 3


def owner_session(world) -> str:  # noqa: ANN001
    """A session for the tenant's owner in the tenant's schema (what logging in through the page makes)."""
    with tenant_context(world.tenant):
        session = SessionStore()
        session[SESSION_KEY] = str(world.owner.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]  # the backend that checks passwords
        session[HASH_SESSION_KEY] = world.owner.get_session_auth_hash()
        session.create()
        return session.session_key


class BackendSampler(threading.Thread):
    """Counts, every half second, the PostgreSQL backends each of our processes holds."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(name="backend-sampler", daemon=True)
        self.names = names
        self.peaks: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        params = connection.get_connection_params()
        with psycopg.connect(dbname="postgres", user=params["user"], host=params["host"], autocommit=True) as conn:
            while not self.stop.wait(0.5):
                rows = conn.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name = ANY(%s) GROUP BY application_name",
                    [params["dbname"], self.names],
                ).fetchall()
                for name, count in rows:
                    self.peaks[name] = max(self.peaks[name], count)


async def soak(server: ServedProcess, worlds: list, sessions: dict[str, str], seconds: float) -> dict:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    latencies: list[float] = []
    chats = 0
    deadline = time.monotonic() + seconds

    async def step(client: httpx.AsyncClient, rng: random.Random) -> None:
        nonlocal chats
        world = rng.choice(worlds)
        host = f"{world.tenant.subdomain}.localhost"
        auth = {"Host": host, "Authorization": f"Token {rng.choice([world.owner_token, world.member_token])}"}
        kind = rng.choices(
            ["list", "create", "upload", "search", "usage", "static", "admin", "conversations", "chat", "ready"],
            weights=[20, 8, 6, 12, 6, 12, 6, 6, 8, 2],
        )[0]
        started = time.perf_counter()
        if kind == "chat":
            async with await ws_connect(server, world.tenant.subdomain, token=world.member_token) as ws:
                frames = await ask(ws, rng.choice(["What is the refund window?", "Who is on call?"]), timeout=60)
            if frames[-1]["type"] != "done":
                failures.append(f"chat: {frames[-1]}")
            chats += 1
            return
        if kind == "list":
            response = await client.get(f"{server.url}/api/documents/", headers=auth)
        elif kind == "create":
            body = {"title": f"Note {rng.randrange(10**6)}", "content": "Refunds are accepted for thirty days."}
            response = await client.post(f"{server.url}/api/documents/", json=body, headers=auth)
        elif kind == "upload":
            name, data = rng.choice(
                [
                    ("rota.md", b"# On call\n\nThe on-call engineer this week is Dana."),
                    ("policy.txt", b"Refunds are accepted within thirty days of delivery."),
                    ("faq.html", b"<html><body><h1>FAQ</h1><p>Support answers within a day.</p></body></html>"),
                ]
            )
            response = await client.post(f"{server.url}/api/documents/", files={"file": (name, data)}, headers=auth)
        elif kind == "search":
            response = await client.post(f"{server.url}/api/search/", json={"query": "refund window"}, headers=auth)
        elif kind == "usage":
            response = await client.get(f"{server.url}/api/usage/", headers=auth)
        elif kind == "static":
            path = rng.choice(["/static/core/strata.css", "/favicon.ico", "/static/ai/chat.js"])
            response = await client.get(f"{server.url}{path}", headers={"Host": host})
        elif kind == "admin":
            path = rng.choice(["/admin/", "/admin/ai/document/", "/admin/ai/agentaction/"])
            cookie = f"{settings.SESSION_COOKIE_NAME}={sessions[world.tenant.subdomain]}"
            response = await client.get(f"{server.url}{path}", headers={"Host": host, "Cookie": cookie})
        elif kind == "conversations":
            response = await client.get(f"{server.url}/api/conversations/", headers=auth)
        else:
            response = await client.get(f"{server.url}/readyz", headers={"Host": "localhost"})
        latencies.append(time.perf_counter() - started)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{kind} {response.status_code}: {response.text[:200]}")

    async def client_loop(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - traffic mix, not security
        async with httpx.AsyncClient(timeout=60) as client:
            while time.monotonic() < deadline:
                try:
                    await step(client, rng)
                except Exception as exc:  # noqa: BLE001 - a dropped request is a failure, whatever its kind
                    failures.append(f"{exc!r}")

    await asyncio.gather(*(client_loop(seed) for seed in range(CLIENTS)))
    return {"statuses": statuses, "failures": failures, "latencies": latencies, "chats": chats}


@pytest.mark.timeout(SOAK_SECONDS + 780)
def test_mixed_traffic_for_a_while_has_no_5xx_and_stays_within_the_pools(tmp_path):
    worlds = [committed(world_create, f"Soak{i}") for i in range(20)]
    sessions = {world.tenant.subdomain: committed(owner_session, world) for world in worlds}
    # The 16 clients act as 20 members at random, so one member may have more than the 3 answers
    # streaming a person may have (CHAT_MAX_STREAMS_PER_USER, tested in tests/ai): under this load
    # an answer takes up to a second. A limit per client, not per member, keeps the soak about 5xx.
    common = {
        "TASK_MODE": "queue",
        "TENANT_SPARE_SCHEMAS": "0",
        "TENANT_RATE_LIMIT_PER_MINUTE": "0",
        "CHAT_MAX_STREAMS_PER_USER": str(CLIENTS),
    }
    web_env = {**common, "DB_POOL_MAX_SIZE": str(WEB_POOL), "DB_APPLICATION_NAME": "strata-soak-web"}
    worker_env = {
        **common,
        "DATABASE_URL": live_database_url(),
        "DB_POOL_MAX_SIZE": str(WORKER_POOL),
        "DB_APPLICATION_NAME": "strata-soak-worker",
    }
    sampler = BackendSampler(["strata-soak-web", "strata-soak-worker"])
    server = ServedProcess(env=web_env, log=tmp_path / "web.log").wait_ready()
    worker = manage_py_process(
        "worker", "--concurrency", str(WORKER_CONCURRENCY), env=worker_env, log=tmp_path / "worker.log"
    )
    sampler.start()
    try:
        result = asyncio.run(soak(server, worlds, sessions, SOAK_SECONDS))

        def unfinished() -> int:
            pending = 0
            for world in worlds:
                with tenant_context(world.tenant):
                    pending += Document.objects.filter(status=Document.Status.PENDING).count()
            return pending

        deadline = time.monotonic() + 180
        while committed(unfinished) and time.monotonic() < deadline:  # the worker catches up
            time.sleep(1)
        left = committed(unfinished)
    finally:
        sampler.stop.set()
        sampler.join(5)
        server.stop()
        process_stop(worker)

    requests = sum(result["statuses"].values())
    p50 = statistics.median(result["latencies"]) * 1000
    print(
        f"\nsoak {SOAK_SECONDS:.0f} s: {requests} requests + {result['chats']} chats,"
        f" statuses {dict(result['statuses'])}, p50 {p50:.1f} ms, peak backends {dict(sampler.peaks)}"
        f" (pools: web {WEB_POOL}, worker {WORKER_POOL} + {WORKER_QUEUE_CONNECTIONS})"
    )
    assert result["failures"] == []
    assert set(result["statuses"]) <= {200, 201}, "every request of the mix succeeds (no 5xx, no refusals)"
    assert requests > 200 and result["chats"] > 10
    assert sampler.peaks["strata-soak-web"] <= WEB_POOL
    assert sampler.peaks["strata-soak-worker"] <= WORKER_POOL + WORKER_QUEUE_CONNECTIONS
    assert left == 0, "every uploaded document was ingested by the worker"
