"""The noisy neighbour, shared by tests/core/test_fair_shares.py and tests/benchmarks/bench_fairness.py:
a real server process, a quiet tenant's requests timed alone and under floods that another tenant
(and anonymous clients from many loopback addresses) throw at its slow paths."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from django_tenants.utils import tenant_context

from ai.models import Document
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_create
from tests.ai.factories import world_create
from tests.conftest import World

FLOOD_KINDS = ("sse_chats", "slow_summaries", "anonymous_logins", "mixed")


@dataclass
class Flooder:
    world: World
    keys: list[str]
    document_id: int

    @property
    def host(self) -> str:
        return f"{self.world.tenant.subdomain}.localhost"


def flooder_create() -> Flooder:
    """A tenant with API keys (each its own share of answers) and a long document to summarise."""
    world = world_create("Flood")
    keys = [
        api_key_create(tenant=world.tenant, created_by=world.owner, name=f"flood {i}", scope=ApiKey.Scope.WRITE)[1]
        for i in range(10)
    ]
    with tenant_context(world.tenant):
        document = Document.objects.create(title="Flood report", content="Findings of the quarter. " * 300)
    return Flooder(world=world, keys=keys, document_id=document.pk)


@dataclass
class Answers:
    """What a set of requests got: statuses, and the refusals that did not say when to come back."""

    statuses: list[int] = field(default_factory=list)
    without_retry_after: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses.append(response.status_code)
            if response.status_code in (429, 503) and "retry-after" not in response.headers:
                self.without_retry_after.append(response.status_code)

    def fail(self, exc: Exception) -> None:
        with self.lock:
            self.failures.append(repr(exc))


def _sse_chat(url: str, flooder: Flooder, key: str, answers: Answers) -> None:
    headers = {"Host": flooder.host, "Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    try:
        with httpx.stream(
            "POST", f"{url}/api/chat/", json={"message": "Tell me a long story."}, headers=headers, timeout=60
        ) as response:
            for _ in response.iter_lines():
                pass
            answers.add(response)
    except httpx.HTTPError as exc:
        answers.fail(exc)


def _summary(url: str, flooder: Flooder, key: str, answers: Answers) -> None:
    headers = {"Host": flooder.host, "Authorization": f"Bearer {key}"}
    try:
        answers.add(httpx.post(f"{url}/api/documents/{flooder.document_id}/summarise/", headers=headers, timeout=60))
    except httpx.HTTPError as exc:
        answers.fail(exc)


def _login(url: str, flooder: Flooder, number: int, answers: Answers) -> None:
    # Each from its own loopback address, as a botnet's would come from many: no per-address limit helps.
    transport = httpx.HTTPTransport(local_address=f"127.0.{number // 250}.{number % 250 + 2}")
    try:
        with httpx.Client(transport=transport, timeout=60) as client:
            response = client.post(
                f"{url}/api/auth/login/",
                json={"email": f"nobody{number}@example.com", "password": "not-a-password"},
                headers={"Host": flooder.host},
            )
        answers.add(response)
    except httpx.HTTPError as exc:
        answers.fail(exc)


def flood_jobs(kind: str, url: str, flooder: Flooder, answers: Answers) -> list[Callable[[], None]]:
    """The requests of one kind of flood (``mixed``: a share of each), as callables."""
    chats = [lambda i=i: _sse_chat(url, flooder, flooder.keys[i % len(flooder.keys)], answers) for i in range(30)]
    summaries = [lambda i=i: _summary(url, flooder, flooder.keys[i % len(flooder.keys)], answers) for i in range(20)]
    logins = [lambda i=i: _login(url, flooder, i, answers) for i in range(40)]
    return {
        "sse_chats": chats,
        "slow_summaries": summaries,
        "anonymous_logins": logins,
        "mixed": chats + summaries[:20] + logins,
    }[kind]


@dataclass
class Timings:
    seconds: list[float]
    errors: list[str]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def quiet_requests(url: str, world: World, *, count: int, pause: float = 0.05) -> Timings:
    """``count`` plain ``GET /api/documents/`` of the quiet tenant, one after another, timed."""
    seconds: list[float] = []
    errors: list[str] = []
    headers = {"Host": f"{world.tenant.subdomain}.localhost", "Authorization": f"Token {world.member_token}"}
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            try:
                response = client.get(f"{url}/api/documents/", headers=headers)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            seconds.append(time.perf_counter() - started)
            time.sleep(pause)
    return Timings(seconds, errors)


def under_flood(kind: str, url: str, flooder: Flooder, quiet: World, *, count: int) -> tuple[Timings, Answers]:
    """The quiet tenant's requests while a flood of ``kind`` runs (started first, so it is under way)."""
    answers = Answers()
    jobs = flood_jobs(kind, url, flooder, answers)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        time.sleep(0.5)  # the flood's requests are in the server before the quiet ones start
        timings = quiet_requests(url, quiet, count=count)
        for future in futures:
            future.result()
    return timings, answers


def server_env(anthropic_url: str, **extra: Any) -> dict[str, str]:
    """A server with a slow upstream in front of it and a pool far smaller than the flood."""
    return {
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "ANTHROPIC_BASE_URL": anthropic_url,
        "CHAT_CONTEXT_CHUNKS": "0",
        **{name: str(value) for name, value in extra.items()},
    }
