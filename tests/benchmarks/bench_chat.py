"""Chat through Strata's WebSocket vs the SDK calling the same fake upstream; 200 concurrent chats
with and without batched question embeddings, on one process and on two; resuming an answer.

Strata runs as its own processes (`manage.py up` on a fresh embedded database, plus uvicorn
processes on the same database: one as it ships, one with retrieval off, one with batching off,
one embedding questions at the priority of serving, and one with two workers), the fake Messages
API as another, and the clients here, so they don't
share one interpreter. The concurrent runs also report the server's CPU time per chat, which is
what bounds them on a small machine.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import httpx
import psycopg
import pytest
import websockets

from tests.benchmarks.conftest import percentile, print_table, summary
from tests.processes import ROOT, free_port, wait_for


def stack_env(*, data_dir, port: int, fake_port: int) -> dict[str, str]:  # noqa: ANN001
    """The environment of a benchmark's own Strata (``manage.py up`` on a fresh data folder) whose
    chats are one person's many sockets, against the fake Messages API on ``fake_port``."""
    env = {
        **os.environ,
        "STRATA_DATA_DIR": str(data_dir),
        "PORT": str(port),
        "ANTHROPIC_API_KEY": "sk-ant-bench",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "CHAT_MAX_STREAMS_PER_USER": "100000",
        "SOCKET_MAX_PER_PERSON": "0",  # its concurrent chats are one person's sockets
        "TENANT_RATE_LIMIT_PER_MINUTE": "0",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
        # The ONNX export of the question model is made once, not once per benchmark run.
        "EMBEDDING_CACHE_DIR": str(ROOT / ".data" / "models"),
    }
    env.pop("DATABASE_URL", None)
    return env


def demo_login(*, data_dir, port: int, fake_port: int) -> tuple[str, str]:  # noqa: ANN001
    """Once the fake upstream and ``manage.py up`` answer: the demo tenant's host and its demo
    person's login token."""
    wait_for(f"http://127.0.0.1:{fake_port}/", timeout=20, every=0.1, healthy=up)
    wait_for(f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"}, timeout=90, every=0.1, healthy=up)
    credentials = json.loads((data_dir / "credentials.json").read_text())
    host = f"demo.localhost:{port}"
    token = httpx.post(
        f"http://127.0.0.1:{port}/api/auth/login/",
        headers={"Host": host},
        json={"email": credentials["demo_email"], "password": credentials["demo_password"]},
    ).json()["key"]
    return host, token


def handbook_and_no_limits(*, data_dir, port: int, host: str, token: str) -> str:  # noqa: ANN001
    """The demo tenant's one document (ingested), no allowance to run out, and the plan's share of
    concurrent answers (8) lifted: 200 chats at once would otherwise be refused as tenant_busy past
    the eighth. Returns the database's DSN."""
    httpx.post(
        f"http://127.0.0.1:{port}/api/documents/",
        headers={"Host": host, "Authorization": f"Token {token}"},
        json={"title": "Handbook", "content": "Refunds are accepted within thirty days of delivery. " * 20},
        timeout=60,
    )
    dsn = f"postgresql://postgres@/strata?host={data_dir / 'postgres'}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE billing_plan SET hard_limit = false, concurrent_requests = 30000")
    time.sleep(3)  # let the background ingest finish
    return dsn


def up(status: int) -> bool:
    """Any answer short of a server error: the process is up."""
    return status < 500


def goal(text: str, met: bool) -> None:
    print(f"\ngoal: {text} -> {'met' if met else 'NOT met'}")


REPLY = " ".join(f"token{i}" for i in range(30))
SEQUENTIAL = 60
CONCURRENT = 200
RESUMES = 40
WORKERS = 2
# Issue 26's goals (an earlier issue asked for 500 and 10 ms).
GOAL_CONCURRENT_TTFT_P50_MS = 600
GOAL_ADDED_TTFT_MS = 5
GOAL_RESUME_MS = 50


@dataclass
class DemoStack:
    """A benchmark's own Strata: ``manage.py up`` on a fresh data folder, its demo tenant holding the
    handbook with no limits, and the fake Messages API; ``servers`` started beside it (on the same
    database) are stopped with it."""

    data_dir: Path
    port: int
    fake_port: int
    env: dict[str, str]
    token: str = ""
    dsn: str = ""
    servers: list[subprocess.Popen] = field(default_factory=list)

    def serve(self, command: list[str], **overrides: str) -> subprocess.Popen:
        """Start a web process of this stack (``python -m ...``) with settings of its own."""
        process = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, env={**self.env, **overrides})
        self.servers.append(process)
        return process


@contextmanager
def demo_stack(data_dir: Path) -> Iterator[DemoStack]:
    fake_port, port = free_port(), free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.anthropic_server", "--port", str(fake_port), "--reply", REPLY], cwd=ROOT
    )
    stack = DemoStack(data_dir, port, fake_port, stack_env(data_dir=data_dir, port=port, fake_port=fake_port))
    server = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port)], cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL
    )
    try:
        host, stack.token = demo_login(data_dir=data_dir, port=port, fake_port=fake_port)
        stack.dsn = handbook_and_no_limits(data_dir=data_dir, port=port, host=host, token=stack.token)
        yield stack
    finally:
        for process in [*stack.servers, server]:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)
        fake.terminate()
        fake.wait(timeout=10)


def ready(port: int) -> None:
    wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "localhost"}, timeout=240, every=0.1, healthy=up)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with demo_stack(tmp_path_factory.mktemp("bench-chat")) as demo:
        # The same platform with retrieval off (isolates what the transport and bookkeeping add),
        # and with question embeddings one at a time (what batching saves under load).
        # The production topology on this machine: as many uvicorn workers as cores (WEB_CONCURRENCY).
        # The concurrent chats run on plain uvicorn processes, so their CPU is the server's alone
        # (manage.py up has a job worker as its child).
        extra = {
            "single_port": ({}, 1),
            "plain_port": ({"CHAT_CONTEXT_CHUNKS": "0"}, 1),
            "unbatched_port": ({"EMBEDDING_QUERY_BATCH_MAX": "1"}, 1),
            # Questions embedded at the priority of serving (the default runs them 10 nice steps below).
            "same_priority_port": ({"EMBEDDING_QUERY_NICENESS": "0"}, 1),
            "workers_port": ({}, WORKERS),
        }
        ports = {name: free_port() for name in extra}
        pids = {}
        for name, (overrides, workers) in extra.items():
            command = ["uvicorn", "config.asgi:application", "--port", str(ports[name]), "--workers", str(workers)]
            command += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--log-level", "error"]
            pids[name] = demo.serve(command, **overrides).pid
        for port in ports.values():
            ready(port)
        yield {
            "port": demo.port,
            "pids": pids,
            **ports,
            "fake_url": f"http://127.0.0.1:{demo.fake_port}",
            "token": demo.token,
            "dsn": demo.dsn,
        }


def demo_socket(port: int, token: str) -> websockets.connect:
    """The demo tenant's chat WebSocket on a server process here (*.localhost by 127.0.0.1)."""
    return websockets.connect(
        f"ws://demo.localhost:{port}/ws/chat/",
        additional_headers={"Authorization": f"Token {token}"},
        host="127.0.0.1",
        port=port,
        proxy=None,
        open_timeout=60,
        max_queue=None,
    )


async def ws_chat(port: int, token: str, question: str) -> tuple[float, float, list[float], bool]:  # noqa: C901
    """(time to first token, total time, gaps between tokens, ok) for one chat over a fresh socket."""
    async with demo_socket(port, token) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"message": question}))
        first = None
        arrivals = []
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if frame["type"] == "token":
                now = time.perf_counter()
                first = first or now
                arrivals.append(now)
            elif frame["type"] in ("done", "error"):
                gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
                return (first or started) - started, time.perf_counter() - started, gaps, frame["type"] == "done"


async def sdk_chat(client: anthropic.AsyncAnthropic, question: str) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    async with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=1024, messages=[{"role": "user", "content": question}]
    ) as stream:
        async for _ in stream.text_stream:
            first = first or time.perf_counter()
    return first - started, time.perf_counter() - started


@pytest.mark.benchmark
def test_added_latency_of_a_chat_through_strata(stack):
    async def run():
        client = anthropic.AsyncAnthropic(api_key="sk-ant-bench", base_url=stack["fake_url"])
        direct, strata, plain = [], [], []
        await ws_chat(stack["port"], stack["token"], "warm up")  # loads the embedding model
        await ws_chat(stack["plain_port"], stack["token"], "warm up")
        for i in range(SEQUENTIAL):
            direct.append(await sdk_chat(client, f"What is the refund window? {i}"))
            ttft, total, _, ok = await ws_chat(stack["port"], stack["token"], f"What is the refund window? {i}")
            assert ok
            strata.append((ttft, total))
            ttft, total, _, ok = await ws_chat(stack["plain_port"], stack["token"], f"What is the refund window? {i}")
            assert ok
            plain.append((ttft, total))
        await client.close()
        return direct, strata, plain

    direct, strata, plain = asyncio.run(run())
    ms = lambda values: [v * 1000 for v in values]  # noqa: E731
    embedding = ms(question_embedding_seconds([f"What is the refund window? {i}" for i in range(SEQUENTIAL)]))
    d_ttft, d_total = ms([d[0] for d in direct]), ms([d[1] for d in direct])
    s_ttft, s_total = ms([s[0] for s in strata]), ms([s[1] for s in strata])
    p_ttft, p_total = ms([p[0] for p in plain]), ms([p[1] for p in plain])
    rows = [
        ["SDK direct: first token", *summary(d_ttft)],
        ["Strata WebSocket: first token", *summary(s_ttft)],
        [
            "added to first token",
            summary(s_ttft)[0] - summary(d_ttft)[0],
            summary(s_ttft)[1] - summary(d_ttft)[1],
            summary(s_ttft)[2] - summary(d_ttft)[2],
        ],
        ["SDK direct: total", *summary(d_total)],
        ["Strata WebSocket: total", *summary(s_total)],
        [
            "added to total",
            summary(s_total)[0] - summary(d_total)[0],
            summary(s_total)[1] - summary(d_total)[1],
            summary(s_total)[2] - summary(d_total)[2],
        ],
        ["Strata, retrieval off: first token", *summary(p_ttft)],
        [
            "added to first token, retrieval off",
            summary(p_ttft)[0] - summary(d_ttft)[0],
            summary(p_ttft)[1] - summary(d_ttft)[1],
            summary(p_ttft)[2] - summary(d_ttft)[2],
        ],
        ["Strata, retrieval off: total", *summary(p_total)],
        [
            "added to total, retrieval off",
            summary(p_total)[0] - summary(d_total)[0],
            summary(p_total)[1] - summary(d_total)[1],
            summary(p_total)[2] - summary(d_total)[2],
        ],
        ["the question's embedding alone (same model and thread count, this process)", *summary(embedding)],
    ]
    print_table(f"Chat latency, {SEQUENTIAL} sequential chats of 30 tokens (ms)", ["path", "p50", "p95", "mean"], rows)
    added = summary(s_ttft)[0] - summary(d_ttft)[0]
    goal(f"added to first token with retrieval < {GOAL_ADDED_TTFT_MS} ms", added < GOAL_ADDED_TTFT_MS)


def question_embedding_seconds(questions: list[str]) -> list[float]:
    """Each question embedded by the graph a web process embeds questions with (one intra-op
    thread), in this process: the part of retrieval's added latency that no server change removes."""
    from ai.embedding.embedders import WEIGHTS_SHA256, _load_model, model_folder

    model = _load_model(model_folder(), WEIGHTS_SHA256, questions=True)
    model.embed(["warm up"], threads=1)
    seconds = []
    for question in questions:
        started = time.perf_counter()
        model.embed([question], threads=1)
        seconds.append(time.perf_counter() - started)
    return seconds


def cpu_seconds(pid: int) -> float:
    """CPU time of a server process and its children (uvicorn's workers), from /proc (Linux)."""
    seconds = 0.0
    for task in [pid, *children(pid)]:
        with open(f"/proc/{task}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(child) for child in listed.read().split()]
    except FileNotFoundError:
        return []


async def concurrent_chats(port: int, token: str, dsn: str, pid: int) -> dict:
    """CONCURRENT chats at once on one server: first-token times, errors, peak connections, CPU."""
    peak = {"connections": 0, "baseline": None}
    stop = asyncio.Event()

    async def sample_connections():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'strata' AND pid <> pg_backend_pid()"
                    )
                ).fetchone()
                if peak["baseline"] is None:
                    peak["baseline"] = row[0]
                peak["connections"] = max(peak["connections"], row[0])
                await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_connections())
    await asyncio.sleep(0.1)
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    results = await asyncio.gather(
        *[ws_chat(port, token, f"question {i}") for i in range(CONCURRENT)], return_exceptions=True
    )
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    stop.set()
    await sampler
    errors = [r for r in results if isinstance(r, BaseException) or not r[3]]
    ttfts = [r[0] * 1000 for r in results if not isinstance(r, BaseException)]
    return {
        "errors": errors,
        "wall": elapsed,
        "p50": percentile(ttfts, 50),
        "p95": percentile(ttfts, 95),
        "p99": percentile(ttfts, 99),
        "connections": peak["connections"] - (peak["baseline"] or 0),
        "cpu_per_chat_ms": cpu * 1000 / CONCURRENT,
        "cores_used": cpu / elapsed,
    }


@pytest.mark.benchmark
def test_200_concurrent_websocket_chats_with_and_without_batching(stack):
    configurations = (
        ("1 process, batched", "single_port"),
        ("the same, questions at serving priority", "same_priority_port"),
        ("1 process, one at a time", "unbatched_port"),
        (f"{WORKERS} worker processes, batched", "workers_port"),
    )

    async def run():
        runs = {}
        for name, port_name in configurations:
            for _ in range(WORKERS * 2):  # each worker's model and connections warm
                await ws_chat(stack[port_name], stack["token"], "warm up")
            runs[name] = await concurrent_chats(
                stack[port_name], stack["token"], stack["dsn"], stack["pids"][port_name]
            )
            await asyncio.sleep(2)  # let the finished answers' bookkeeping settle
        return runs

    runs = asyncio.run(run())
    names = list(runs)
    print_table(
        f"{CONCURRENT} concurrent WebSocket chats, each on a new socket ({os.cpu_count()} cores; the clients, "
        "PostgreSQL and the fake API share them)",
        ["measure", *names],
        [
            ["chats completed", *[CONCURRENT - len(runs[n]["errors"]) for n in names]],
            ["errors", *[len(runs[n]["errors"]) for n in names]],
            ["wall time (s)", *[runs[n]["wall"] for n in names]],
            ["first token p50 (ms)", *[runs[n]["p50"] for n in names]],
            ["first token p95 (ms)", *[runs[n]["p95"] for n in names]],
            ["first token p99 (ms)", *[runs[n]["p99"] for n in names]],
            ["server CPU per chat (ms)", *[runs[n]["cpu_per_chat_ms"] for n in names]],
            ["server cores busy (CPU s / wall s)", *[runs[n]["cores_used"] for n in names]],
            ["peak database connections (above idle)", *[runs[n]["connections"] for n in names]],
        ],
    )
    for name in names:
        p50 = runs[name]["p50"]
        goal(f"{name}: first token p50 < {GOAL_CONCURRENT_TTFT_P50_MS} ms", p50 < GOAL_CONCURRENT_TTFT_P50_MS)
    for name in names:
        assert not runs[name]["errors"], runs[name]["errors"][:3]


async def resume_once(port: int, token: str, question: str) -> float:
    """Seconds from opening a new socket to the first replayed frame of an answer left after 5 tokens."""
    async with demo_socket(port, token) as ws:
        await ws.send(json.dumps({"message": question}))
        seen = [json.loads(await ws.recv()) for _ in range(6)]
    started = time.perf_counter()
    async with demo_socket(port, token) as ws:
        await ws.send(json.dumps({"type": "resume", "message_id": seen[0]["message_id"], "after": seen[-1]["seq"]}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        elapsed = time.perf_counter() - started
        assert frame["seq"] == seen[-1]["seq"] + 1
    return elapsed


@pytest.mark.benchmark
def test_resume_latency(stack):
    async def run():
        return [await resume_once(stack["port"], stack["token"], f"resume me {i}") for i in range(RESUMES)]

    latencies = [seconds * 1000 for seconds in asyncio.run(run())]
    p50, p95, mean = summary(latencies)
    print_table(
        f"Resuming an answer, {RESUMES} times (ms): new socket, handshake, resume frame, first replayed frame",
        ["path", "p50", "p95", "mean"],
        [["reconnect to first replayed frame", p50, p95, mean]],
    )
    goal(f"resume p50 < {GOAL_RESUME_MS} ms", p50 < GOAL_RESUME_MS)
