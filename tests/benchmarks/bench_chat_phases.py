"""Where a chat's first token waits, phase by phase, at one chat at a time: the profile behind
issue 26's "added to the first token" (bench_chat.py measures the total from the client).

Two traced web processes (``tests/benchmarks/chat_trace.py``) serve the same demo tenant, one with
retrieval and one without (``CHAT_CONTEXT_CHUNKS=0``), beside the SDK calling the fake Messages API
directly; the three take turns, one chat at a time. The table gives each phase's median start
(from the moment the question's frame reached the consumer) and median length, with the thread it
ran on, then the client's first-token figures.

    .venv/bin/python -m pytest tests/benchmarks/bench_chat_phases.py -o python_files='bench_*.py' -s -q
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest

from tests.benchmarks.bench_chat import (
    REPLY,
    demo_login,
    handbook_and_no_limits,
    sdk_chat,
    stack_env,
    up,
    ws_chat,
)
from tests.benchmarks.conftest import print_table, summary
from tests.processes import ROOT, free_port, wait_for

pytestmark = pytest.mark.benchmark

CHATS = 60
WARM_UP = 5  # turns left out: the first loads the model, the next warm the pools and caches


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bench-chat-phases")
    fake_port, port = free_port(), free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.anthropic_server", "--port", str(fake_port), "--reply", REPLY], cwd=ROOT
    )
    env = stack_env(data_dir=data_dir, port=port, fake_port=fake_port)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    tracers: list[subprocess.Popen] = []
    try:
        host, token = demo_login(data_dir=data_dir, port=port, fake_port=fake_port)
        handbook_and_no_limits(data_dir=data_dir, port=port, host=host, token=token)
        variants = {}
        for name, overrides in [("retrieval", {}), ("no retrieval", {"CHAT_CONTEXT_CHUNKS": "0"})]:
            trace, port_ = data_dir / f"{name.replace(' ', '-')}.jsonl", free_port()
            tracers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.benchmarks.chat_trace", "--port", str(port_), "--trace", str(trace)],
                    cwd=ROOT,
                    env={**env, **overrides},
                )
            )
            variants[name] = (port_, trace)
        for port_, _ in variants.values():
            wait_for(
                f"http://127.0.0.1:{port_}/readyz", headers={"Host": "localhost"}, timeout=240, every=0.1, healthy=up
            )
        yield {"variants": variants, "token": token, "fake_url": f"http://127.0.0.1:{fake_port}", "tracers": tracers}
    finally:
        for process in [*tracers, server]:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)
        fake.terminate()
        fake.wait(timeout=10)


def phases(trace: Path) -> list[list[object]]:
    """One row per span name: median start after the frame arrived, median length (ms), thread,
    and in how many of the turns it ran."""
    turns = [json.loads(line) for line in trace.read_text().splitlines()][WARM_UP:]
    starts: dict[str, list[float]] = {}
    lengths: dict[str, list[float]] = {}
    threads: dict[str, str] = {}
    for spans in turns:
        origin = next(start for name, start, _, _ in spans if name == "frame received")
        seen = set()
        for name, start, end, thread in spans:
            if name in seen:  # a second call of the same step (none in an ordinary turn)
                continue
            seen.add(name)
            starts.setdefault(name, []).append(start - origin)
            lengths.setdefault(name, []).append(end - start)
            threads[name] = thread.removeprefix("strata-")
    rows = [
        [name, statistics.median(starts[name]), statistics.median(lengths[name]), threads[name], len(starts[name])]
        for name in starts
    ]
    return sorted(rows, key=lambda row: row[1])


def test_where_the_first_token_waits(traced):
    async def run() -> dict[str, list[float]]:
        client = anthropic.AsyncAnthropic(api_key="sk-ant-bench", base_url=traced["fake_url"])
        first: dict[str, list[float]] = {"SDK direct": []}
        for _ in range(WARM_UP):
            for port, _ in traced["variants"].values():
                await ws_chat(port, traced["token"], "warm up")
        for i in range(CHATS):
            question = f"What is the refund window? {i}"
            first["SDK direct"].append((await sdk_chat(client, question))[0] * 1000)
            for name, (port, _) in traced["variants"].items():
                ttft, _, _, ok = await ws_chat(port, traced["token"], question)
                assert ok
                first.setdefault(name, []).append(ttft * 1000)
        await client.close()
        return first

    first = asyncio.run(run())
    for process in traced["tracers"]:  # each writes its last turn as it stops
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    time.sleep(0.1)
    direct = summary(first["SDK direct"])[0]
    for name, (_, trace) in traced["variants"].items():
        rows = phases(trace)
        assert len(json.loads(trace.read_text().splitlines()[-1])) > 3
        print_table(
            f"Server phases of a chat turn, {name}: median over {CHATS} turns, one at a time (ms)",
            ["phase", "starts at", "lasts", "thread", "turns"],
            rows,
        )
    print_table(
        "First token at the client (ms)",
        ["path", "p50", "p95", "mean", "added to SDK direct, p50"],
        [[name, *summary(values), summary(values)[0] - direct] for name, values in first.items()],
    )
