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
import time
from pathlib import Path

import anthropic
import pytest

from tests.benchmarks.bench_chat import demo_stack, ready, sdk_chat, ws_chat
from tests.benchmarks.conftest import print_table, summary
from tests.processes import free_port

pytestmark = pytest.mark.benchmark

CHATS = 60
WARM_UP = 5  # turns left out: the first loads the model, the next warm the pools and caches


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    with demo_stack(tmp_path_factory.mktemp("bench-chat-phases")) as demo:
        variants = {}
        for name, overrides in [("retrieval", {}), ("no retrieval", {"CHAT_CONTEXT_CHUNKS": "0"})]:
            trace, port = demo.data_dir / f"{name.replace(' ', '-')}.jsonl", free_port()
            demo.serve(["tests.benchmarks.chat_trace", "--port", str(port), "--trace", str(trace)], **overrides)
            variants[name] = (port, trace)
        for port, _ in variants.values():
            ready(port)
        yield demo, variants


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
    demo, variants = traced

    async def run() -> dict[str, list[float]]:
        client = anthropic.AsyncAnthropic(api_key="sk-ant-bench", base_url=f"http://127.0.0.1:{demo.fake_port}")
        first: dict[str, list[float]] = {"SDK direct": []}
        for _ in range(WARM_UP):
            for port, _ in variants.values():
                await ws_chat(port, demo.token, "warm up")
        for i in range(CHATS):
            question = f"What is the refund window? {i}"
            first["SDK direct"].append((await sdk_chat(client, question))[0] * 1000)
            for name, (port, _) in variants.items():
                ttft, _, _, ok = await ws_chat(port, demo.token, question)
                assert ok
                first.setdefault(name, []).append(ttft * 1000)
        await client.close()
        return first

    first = asyncio.run(run())
    for process in demo.servers:  # each writes its last turn as it stops
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    time.sleep(0.1)
    direct = summary(first["SDK direct"])[0]
    for name, (_, trace) in variants.items():
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
