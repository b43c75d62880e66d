"""Chat through Strata's WebSocket vs the SDK calling the same fake upstream; 200 concurrent chats.

Strata runs as its own process (`manage.py up` on a fresh embedded database), the fake Messages
API as another, and the clients here, so the three don't share one interpreter.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import psycopg
import pytest
import websockets

from tests.benchmarks.conftest import percentile, print_table, summary
from tests.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
REPLY = " ".join(f"token{i}" for i in range(30))
SEQUENTIAL = 60
CONCURRENT = 200


def wait_http(url: str, headers: dict | None = None, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers or {}, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bench-chat")
    fake_port, port = free_port(), free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.anthropic_server", "--port", str(fake_port), "--reply", REPLY], cwd=ROOT
    )
    env = {
        **os.environ,
        "STRATA_DATA_DIR": str(data_dir),
        "PORT": str(port),
        "ANTHROPIC_API_KEY": "sk-ant-bench",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}",
        "CHAT_MAX_STREAMS_PER_USER": "100000",
        "TENANT_RATE_LIMIT_PER_MINUTE": "0",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
    }
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/", timeout=20)
        wait_http(f"http://127.0.0.1:{port}/healthz", {"Host": "localhost"})
        credentials = json.loads((data_dir / "credentials.json").read_text())
        host = f"demo.localhost:{port}"
        token = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/login/",
            headers={"Host": host},
            json={"email": credentials["demo_email"], "password": credentials["demo_password"]},
        ).json()["key"]
        auth = {"Host": host, "Authorization": f"Token {token}"}
        httpx.post(
            f"http://127.0.0.1:{port}/api/documents/",
            headers=auth,
            json={"title": "Handbook", "content": "Refunds are accepted within thirty days of delivery. " * 20},
            timeout=60,
        )
        dsn = f"postgresql://postgres@/strata?host={data_dir / 'postgres'}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE billing_plan SET hard_limit = false")
        time.sleep(3)  # let the background ingest finish
        # The same platform with retrieval off: isolates what the transport and bookkeeping add.
        plain_port = free_port()
        plain = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "core.project.asgi:application",
                "--port",
                str(plain_port),
                "--ws",
                "websockets-sansio",
                "--lifespan",
                "off",
                "--log-level",
                "error",
            ],
            cwd=ROOT,
            env={**env, "CHAT_CONTEXT_CHUNKS": "0"},
        )
        wait_http(f"http://127.0.0.1:{plain_port}/healthz", {"Host": "localhost"})
        yield {
            "port": port,
            "plain_port": plain_port,
            "fake_url": f"http://127.0.0.1:{fake_port}",
            "token": token,
            "dsn": dsn,
        }
    finally:
        for process in [p for p in (locals().get("plain"), server) if p is not None]:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        fake.terminate()
        fake.wait(timeout=10)


async def ws_chat(port: int, token: str, question: str) -> tuple[float, float, list[float], bool]:  # noqa: C901
    """(time to first token, total time, gaps between tokens, ok) for one chat over a fresh socket."""
    async with websockets.connect(
        f"ws://demo.localhost:{port}/ws/chat/",
        additional_headers={"Authorization": f"Token {token}"},
        host="127.0.0.1",
        port=port,
        proxy=None,
        open_timeout=60,
        max_queue=None,
    ) as ws:
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
    ]
    print_table(f"Chat latency, {SEQUENTIAL} sequential chats of 30 tokens (ms)", ["path", "p50", "p95", "mean"], rows)


@pytest.mark.benchmark
def test_200_concurrent_websocket_chats(stack):
    peak = {"connections": 0}
    stop = asyncio.Event()

    async def sample_connections():
        async with await psycopg.AsyncConnection.connect(stack["dsn"], autocommit=True) as conn:
            while not stop.is_set():
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'strata' AND pid <> pg_backend_pid()"
                    )
                ).fetchone()
                peak["connections"] = max(peak["connections"], row[0])
                await asyncio.sleep(0.05)

    async def run():
        sampler = asyncio.create_task(sample_connections())
        started = time.perf_counter()
        results = await asyncio.gather(
            *[ws_chat(stack["port"], stack["token"], f"question {i}") for i in range(CONCURRENT)],
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await sampler
        return results, elapsed

    results, elapsed = asyncio.run(run())
    errors = [r for r in results if isinstance(r, BaseException) or not r[3]]
    gaps = [g * 1000 for r in results if not isinstance(r, BaseException) for g in r[2]]
    ttfts = [r[0] * 1000 for r in results if not isinstance(r, BaseException)]
    print_table(
        f"{CONCURRENT} concurrent WebSocket chats in one server process",
        ["measure", "value"],
        [
            ["chats completed", CONCURRENT - len(errors)],
            ["errors", len(errors)],
            ["wall time (s)", elapsed],
            ["first token p50 (ms)", percentile(ttfts, 50)],
            ["first token p99 (ms)", percentile(ttfts, 99)],
            ["gap between tokens p50 (ms)", percentile(gaps, 50)],
            ["gap between tokens p99 (ms)", percentile(gaps, 99)],
            ["peak database connections", peak["connections"]],
        ],
    )
    assert not errors, errors[:3]
