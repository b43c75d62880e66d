"""The noisy neighbour, shared by tests/core/test_fair_shares.py and tests/benchmarks/bench_fairness.py:
a real server process, a quiet tenant's requests timed alone and under floods that another tenant
(and anonymous clients from many loopback addresses) throw at its slow paths."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from django_tenants.utils import tenant_context

from ai.models import Document
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_create
from tests.ai.factories import world_create
from tests.conftest import World
from tests.flood import FLOOD_KINDS, Answers, flood_run

__all__ = ["FLOOD_KINDS", "Answers", "Flooder", "flooder_create", "quiet_requests", "server_env", "under_flood"]


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
    """The quiet tenant's requests while a flood of ``kind`` runs (started first, so it is under
    way). The flood runs in a process of its own: its threads must not slow the quiet client's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        flood = pool.submit(flood_run, kind, url, flooder.host, flooder.keys, flooder.document_id)
        time.sleep(1.5)  # the child starts, and the flood's requests are in the server
        timings = quiet_requests(url, quiet, count=count)
        return timings, flood.result()


def server_env(anthropic_url: str, **extra: Any) -> dict[str, str]:
    """A server with a slow upstream in front of it and a pool far smaller than the flood."""
    return {
        # The flood's logins cost what a deployment's do (half a second of a core each): with the
        # suite's fast hasher (tests/hashers.py) that part of the flood would be free.
        "PASSWORD_HASHER": "core.platform.passwords.AdmittedPBKDF2PasswordHasher",
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "ANTHROPIC_BASE_URL": anthropic_url,
        "CHAT_CONTEXT_CHUNKS": "0",
        **{name: str(value) for name, value in extra.items()},
    }
