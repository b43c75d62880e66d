"""The cost of a plain request: a token-authenticated ``GET /api/documents/`` on a tenant host, under
uvicorn and under a sync WSGI server (wsgiref), interleaved; server CPU per request from each server
process's cpu_times, and the SQL round trips of one request. Goals: ≤ 5 round trips; uvicorn ≤ 1.1×
WSGI. ``BENCH_REQUEST_REF=<commit>`` also serves that commit's code (an archive of it) beside the
working tree's, for a before/after in the same run."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.benchmarks.conftest import print_table
from tests.processes import ROOT, SPAWNED_APPLICATION_NAME, free_port, live_database_url, process_stop, wait_until
from tests.tenants.test_request_round_trips import (
    hand_offs_to_threads,
    pool_in_use,
    statements_sent_by_other_threads,
)

pytestmark = [pytest.mark.benchmark, pytest.mark.django_db]

REQUESTS = int(os.environ.get("BENCH_REQUEST_N", "300"))
ROUNDS = int(os.environ.get("BENCH_REQUEST_ROUNDS", "3"))


class Server:
    def __init__(self, name: str, module: str, tree: Path, log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": live_database_url(),
            "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
            "TASK_MODE": "eager",
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", module, str(self.port)],
            cwd=tree,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.cpu: list[float] = []

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)


def _tree_of(ref: str, into: Path) -> Path:
    """The files of commit ``ref`` in ``into`` (no .venv: the same interpreter serves it)."""
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout  # noqa: S607
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "tests" / "benchmarks" / "serve_wsgi.py").write_text((ROOT / "tests/benchmarks/serve_wsgi.py").read_text())
    return into


def _hand_offs_of_one_request(url: str, headers: dict[str, str], idle: Any) -> dict[str, int]:
    """How often one request crosses between the event loop and a worker thread (asgiref)."""
    with httpx.Client(timeout=30) as client, hand_offs_to_threads() as handed:
        client.get(url, headers=headers)
        wait_until(idle, timeout=10, every=0.01, what="the pool idle")
    return dict(Counter(direction for direction, _ in handed))


def test_a_plain_request_costs_under_uvicorn_what_it_costs_under_wsgi(live_worlds, asgi_server, tmp_path):
    world = live_worlds["acme"]
    headers = {"Host": "acme.localhost", "Authorization": f"Token {world.member_token}"}
    held_before = pool_in_use()

    def pool_idle() -> bool:
        return pool_in_use() <= held_before

    # Round trips of one request, counted at the psycopg level in this process's server.
    with httpx.Client(timeout=30) as client:
        client.get(f"{asgi_server.url}/api/documents/", headers=headers)
        wait_until(pool_idle, timeout=10, every=0.01, what="the pool idle")
        with statements_sent_by_other_threads() as sent:
            client.get(f"{asgi_server.url}/api/documents/", headers=headers)
            wait_until(pool_idle, timeout=10, every=0.01, what="the pool idle")
    round_trips = len(sent)
    hand_offs = _hand_offs_of_one_request(f"{asgi_server.url}/api/documents/", headers, pool_idle)

    trees = {"tree": ROOT}
    if ref := os.environ.get("BENCH_REQUEST_REF"):
        trees[ref[:8]] = _tree_of(ref, tmp_path / "ref")
    servers = []
    for label, tree in trees.items():
        servers.append(Server(f"uvicorn ({label})", "tests.serve_app", tree, tmp_path / f"uvicorn-{label}.log"))
        servers.append(Server(f"wsgi ({label})", "tests.benchmarks.serve_wsgi", tree, tmp_path / f"wsgi-{label}.log"))
    try:
        with httpx.Client(timeout=30) as client:
            for server in servers:

                def answers(server: Server = server) -> bool:
                    try:
                        return client.get(f"{server.url}/api/documents/", headers=headers).status_code == 200
                    except httpx.TransportError:
                        return False

                wait_until(answers, timeout=120, every=0.2, what=f"{server.name} serving")
                for _ in range(20):  # warm
                    client.get(f"{server.url}/api/documents/", headers=headers)
            for _ in range(ROUNDS):
                for server in servers:
                    before = server.cpu_seconds()
                    for _ in range(REQUESTS):
                        assert client.get(f"{server.url}/api/documents/", headers=headers).status_code == 200
                    server.cpu.append((server.cpu_seconds() - before) / REQUESTS * 1000)
    finally:
        for server in servers:
            process_stop(server.process)

    rows: list[list[object]] = []
    for label in trees:
        uvicorn, wsgi = (s for s in servers if s.name.endswith(f"({label})"))
        for server in (uvicorn, wsgi):
            rows.append([server.name, min(server.cpu), statistics.median(server.cpu), max(server.cpu), ""])
        ratios = [u / w for u, w in zip(uvicorn.cpu, wsgi.cpu, strict=True)]
        rows.append([f"uvicorn / wsgi ({label})", min(ratios), statistics.median(ratios), max(ratios), "per round"])
    print_table(
        f"GET /api/documents/ server CPU, ms per request ({REQUESTS} requests x {ROUNDS} rounds, interleaved); "
        f"SQL round trips per request (tree): {round_trips}; thread hand-offs: {hand_offs}; "
        f"load {os.getloadavg()[0]:.2f}",
        ["server", "min ms", "median ms", "max ms", ""],
        rows,
    )
    assert round_trips <= 5
