"""Strata's chat turn against the same turn on FastAPI + SQLAlchemy 2 async (tests/benchmarks/baselines),
each over WebSocket and SSE: server CPU per chat, first-token p50/p95 at 1, 50 and 200 concurrent
chats (interleaved rounds), and memory per open stream.

Strata runs as `manage.py up` on a fresh embedded database (the demo tenant, one ingested
document) plus one uvicorn process serving the chats; the baseline is one uvicorn process on the
same database and tables; both stream from one fake Messages API process (30 tokens). Memory per
open stream is measured on a second pair of the same servers, pointed at a fake that sends a token
every TOKEN_DELAY_SLOW seconds, so the streams stay open while they are counted.

Needs the baseline extra: pip install -e '.[baseline]' (fastapi, sqlalchemy[asyncio], asyncpg).
"""

import asyncio
import collections
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

for _module in ("fastapi", "sqlalchemy.ext.asyncio", "asyncpg"):
    pytest.importorskip(_module, reason="the chat baseline needs the 'baseline' extra: pip install -e '.[baseline]'")

from tests.benchmarks.bench_chat import REPLY, cpu_seconds, demo_login, demo_socket, stack_env, up  # noqa: E402
from tests.benchmarks.conftest import percentile, print_table  # noqa: E402
from tests.processes import ROOT, free_port, wait_for, wait_until  # noqa: E402

LEVELS = (1, 50, 200)
SEQUENTIAL = 20  # chats one after another at level 1
ROUNDS = int(os.environ.get("BENCH_CHAT_BASELINE_ROUNDS", "3"))
OPEN_STREAMS = int(os.environ.get("BENCH_CHAT_BASELINE_OPEN_STREAMS", "200"))
TOKEN_DELAY_SLOW = 2.0  # 30 tokens: a stream stays open about a minute
GOAL_CPU_RATIO = 1.25
# A folder: after the rounds, one more run of 200 chats per variant under py-spy, and where the samples went.
PROFILE_DIR = os.environ.get("BENCH_CHAT_BASELINE_PROFILE")
PROFILE_RATE = 250  # samples a second
# Close to the handbook's passages whatever is appended, so every turn sends passages and cites them.
QUESTION = "Are refunds accepted within thirty days of delivery?"
VARIANTS = ("Strata WS", "Strata SSE", "baseline WS", "baseline SSE")
UVICORN = ["-m", "uvicorn", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", "--log-level", "error"]
BASELINE_APP = ["chat_app:app", "--app-dir", str(ROOT / "tests" / "benchmarks" / "baselines")]


def _server(app: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *UVICORN, *app, "--port", str(port)], cwd=ROOT, env=env)


def _fake(port: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.fakes.anthropic_server", "--port", str(port), "--reply", REPLY, *extra]
    return subprocess.Popen(command, cwd=ROOT)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _servers_ready(ports: dict[str, int], servers: list[subprocess.Popen]) -> None:
    """Until Strata says ready (its model warm) and the baseline serves its schema."""
    for name, process in zip(ports, servers, strict=True):
        path = "/readyz" if name == "strata" else "/openapi.json"
        wait_for(
            f"http://127.0.0.1:{ports[name]}{path}",
            headers={"Host": "localhost"},
            timeout=240,
            every=0.1,
            healthy=up,
            process=process,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Strata (`manage.py up`, and a uvicorn process for the chats) and the baseline, on one database."""
    data_dir = tmp_path_factory.mktemp("bench-chat-baseline")
    fake_port, port = free_port(), free_port()
    fake = _fake(fake_port)
    env = {
        **stack_env(data_dir=data_dir, port=port, fake_port=fake_port),
        "BASELINE_DATABASE_URL": f"postgresql+asyncpg://postgres@/strata?host={data_dir / 'postgres'}",
    }
    up_process = subprocess.Popen(
        [sys.executable, "manage.py", "up", "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    servers: list[subprocess.Popen] = []
    try:
        host, token = demo_login(data_dir=data_dir, port=port, fake_port=fake_port)
        httpx.post(
            f"http://127.0.0.1:{port}/api/documents/",
            headers={"Host": host, "Authorization": f"Token {token}"},
            json={"title": "Handbook", "content": "Refunds are accepted within thirty days of delivery. " * 20},
            timeout=60,
        ).raise_for_status()
        dsn = f"postgresql://postgres@/strata?host={data_dir / 'postgres'}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            # A hard allowance far from spent: every turn takes the locking reservation path. The plan's
            # share of concurrent answers (Strata's, which the baseline has not) is lifted for 200 at once.
            conn.execute(
                "UPDATE billing_plan SET hard_limit = true, included_tokens = 10 ^ 12, concurrent_requests = 30000"
            )
            (schema,) = conn.execute(
                "SELECT t.schema_name FROM tenants_domain d JOIN tenants_tenant t ON t.id = d.tenant_id"
                " WHERE d.domain = 'demo.localhost'"
            ).fetchone()
            wait_until(
                lambda: conn.execute(
                    f"SELECT count(*) = 0 FROM \"{schema}\".ai_document WHERE status = 'pending'"  # noqa: S608
                ).fetchone()[0],
                timeout=90,
                what="every document ingested",
            )
            subscribed = conn.execute("SELECT count(*) FROM billing_subscription").fetchone()[0]
        ports = {"strata": free_port(), "baseline": free_port()}
        servers += [
            _server(["config.asgi:application"], ports["strata"], env),
            _server(BASELINE_APP, ports["baseline"], env),
        ]
        _servers_ready(ports, servers)
        yield {
            "env": env,
            "token": token,
            "dsn": dsn,
            "schema": schema,
            "subscribed": subscribed,
            "ports": ports,
            "pids": {name: process.pid for name, process in zip(ports, servers, strict=True)},
        }
    finally:
        _stop(servers)
        _stop([up_process])
        fake.terminate()
        fake.wait(timeout=10)


@pytest.fixture(scope="module")
def slow_servers(stack):
    """Another Strata and baseline pair on the same database, streaming from a slow fake."""
    fake_port = free_port()
    fake = _fake(fake_port, "--token-delay", str(TOKEN_DELAY_SLOW))
    env = {**stack["env"], "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{fake_port}"}
    ports = {"strata": free_port(), "baseline": free_port()}
    servers = [
        _server(["config.asgi:application"], ports["strata"], env),
        _server(BASELINE_APP, ports["baseline"], env),
    ]
    try:
        wait_for(f"http://127.0.0.1:{fake_port}/", timeout=20, every=0.1, healthy=up)
        _servers_ready(ports, servers)
        yield {"ports": ports, "pids": {name: process.pid for name, process in zip(ports, servers, strict=True)}}
    finally:
        _stop(servers)
        fake.terminate()
        fake.wait(timeout=10)


# --- Clients: one chat, its first-token time; an open stream held until told to let go ----------


async def ws_chat(port: int, token: str, question: str, hold: asyncio.Event | None = None, opened=None) -> dict:
    """One chat on a new socket: seconds to the first token, the frames' types, the done frame."""
    async with demo_socket(port, token) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"message": question}))
        result = {"ttft": None, "types": [], "done": None}
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if await _frame_ends(result, frame, started, hold, opened):
                return result


async def _frame_ends(result: dict, frame: dict, started: float, hold: asyncio.Event | None, opened) -> bool:  # noqa: ANN001
    """Record one frame of a chat; True when the chat is over for the client: its done or error
    frame, or its first token when it is to be held open (after waiting for ``hold``)."""
    result["types"].append(frame["type"])
    if frame["type"] == "token" and result["ttft"] is None:
        result["ttft"] = time.perf_counter() - started
        if hold is not None:
            opened()
            await hold.wait()
            return True
    elif frame["type"] in ("done", "error"):
        result["done"] = frame
        return True
    return False


async def sse_chat(
    client: httpx.AsyncClient, port: int, token: str, question: str, hold: asyncio.Event | None = None, opened=None
) -> dict:
    """One chat as POST /api/chat/ with server-sent events: as ws_chat."""
    headers = {"Host": f"demo.localhost:{port}", "Authorization": f"Token {token}", "Accept": "text/event-stream"}
    started = time.perf_counter()
    result = {"ttft": None, "types": [], "done": None}
    async with client.stream(
        "POST", f"http://127.0.0.1:{port}/api/chat/", headers=headers, json={"message": question}, timeout=120
    ) as response:
        if response.status_code != 200:
            result["done"] = {"type": "error", "status": response.status_code, "body": (await response.aread())[:300]}
            return result
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if await _frame_ends(result, json.loads(line[6:]), started, hold, opened):
                return result
    return result


def _ok(result) -> bool:
    return not isinstance(result, BaseException) and (result["done"] or {}).get("type") == "done"


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000), proxy=None)


async def chat(variant: str, stack: dict, client: httpx.AsyncClient, question: str, **hold) -> dict:
    port = stack["ports"]["strata" if variant.startswith("Strata") else "baseline"]
    if variant.endswith("WS"):
        return await ws_chat(port, stack["token"], question, **hold)
    return await sse_chat(client, port, stack["token"], question, **hold)


async def quiet_cpu(pid: int) -> float:
    """The server's CPU seconds once it has stopped working (what a finished chat leaves behind,
    such as closing its socket and settling, is counted): no change for 0.3 s, at most 5 s."""
    last, deadline = cpu_seconds(pid), time.monotonic() + 5
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        now = cpu_seconds(pid)
        if now == last:
            break
        last = now
    return last


async def run_level(variant: str, level: int, stack: dict, client: httpx.AsyncClient, tag: str) -> dict:
    """``level`` chats at once (level 1: SEQUENTIAL chats one after another): first tokens, errors, CPU."""
    pid = stack["pids"]["strata" if variant.startswith("Strata") else "baseline"]
    before = await quiet_cpu(pid)
    if level == 1:
        results = [await chat(variant, stack, client, f"{QUESTION} {tag} {i}") for i in range(SEQUENTIAL)]
    else:
        results = await asyncio.gather(
            *[chat(variant, stack, client, f"{QUESTION} {tag} {i}") for i in range(level)],
            return_exceptions=True,
        )
    cpu = await quiet_cpu(pid) - before
    return {
        "ttfts": [r["ttft"] * 1000 for r in results if _ok(r)],
        "errors": [r if isinstance(r, BaseException) else r["done"] for r in results if not _ok(r)],
        "cpu_per_chat_ms": cpu * 1000 / len(results),
    }


@contextlib.contextmanager
def _profiled(pid: int, output: Path):
    """py-spy samples the server while the block runs: the thread holding the GIL (Python at work;
    native code that releases it, such as the embedding model's inference, is not seen)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = ROOT / ".venv" / "bin" / "py-spy"
    command = [
        str(spy),
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        str(PROFILE_RATE),
        "--gil",
        "--nonblocking",
    ]
    recorder = subprocess.Popen([*command, "--subprocesses", "-o", str(output)], stdout=subprocess.DEVNULL)
    time.sleep(1)  # attached
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        recorder.wait(timeout=60)


def _package(frame: str) -> str:
    """``func (django/db/models/query.py:123)`` -> ``django``; the standard library's by module."""
    where = frame.rsplit(" (", 1)[-1]
    return where.split("/", 1)[0].removesuffix(")").split(":")[0].removesuffix(".py")


def _thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process, from /proc (Linux)."""
    seconds = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{task}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
            seconds[int(task)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def _by_thread_name(
    pid: int, before: dict[int, float], after: dict[int, float], *, total: float, chats: int
) -> dict[str, float]:
    """The CPU of each thread during a run, in ms per chat, summed by the Python name of the thread
    (a pool's numbered threads together); what threads that ended meanwhile spent is "ended" (the
    process's CPU less its live threads')."""
    spy = ROOT / ".venv" / "bin" / "py-spy"
    dump = subprocess.run(
        [str(spy), "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True, timeout=60
    ).stdout
    names = {
        int(tid): re.sub(r"[-_]\d+$", "", name) for tid, name in re.findall(r'^Thread (\d+) .*?"(.*)"', dump, re.M)
    }
    spent = collections.Counter()
    for tid, seconds in after.items():
        spent[names.get(tid, "unnamed")] += (seconds - before.get(tid, 0.0)) * 1000 / chats
    spent["ended"] += total * 1000 / chats - sum(spent.values())
    return {name: ms for name, ms in spent.items() if abs(ms) >= 0.05}


def _profile_summary(folder: Path) -> None:
    """Each profile's GIL samples by the package of the frame running (self) and by the packages on
    the stack (inclusive), in % of its samples."""
    by_self: dict[str, collections.Counter] = {}
    by_stack: dict[str, collections.Counter] = {}
    totals: dict[str, int] = {}
    for variant in VARIANTS:
        path = folder / f"{variant.replace(' ', '-')}.txt"
        own, anywhere = collections.Counter(), collections.Counter()
        for line in path.read_text().splitlines():
            stack_text, _, count = line.rpartition(" ")
            frames = stack_text.split(";")[1:]
            if not frames or not count.isdigit():
                continue
            own[_package(frames[-1])] += int(count)
            for package in {_package(frame) for frame in frames}:
                anywhere[package] += int(count)
        by_self[variant], by_stack[variant], totals[variant] = own, anywhere, max(sum(own.values()), 1)
    for title, table in (("self", by_self), ("inclusive", by_stack)):
        packages = collections.Counter()
        for variant in VARIANTS:
            packages.update({name: n / totals[variant] for name, n in table[variant].items()})
        print_table(
            f"Where the GIL holder is, 200 chats at once (py-spy --gil at {PROFILE_RATE} Hz, {title}; % of each "
            f"profile's samples: {', '.join(f'{v} {totals[v]}' for v in VARIANTS)})",
            ["package", *VARIANTS],
            [[name, *[100 * table[v][name] / totals[v] for v in VARIANTS]] for name, _ in packages.most_common(20)],
        )


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@pytest.mark.benchmark
def test_the_baseline_answers_a_chat_turn_as_strata_does(stack):
    """The smoke test: over both transports the baseline sends Strata's frames and leaves Strata's
    rows (the turn, the settled answer with its passages, the ledger row, no reservation held)."""

    async def run():
        async with _client() as client:
            return {variant: await chat(variant, stack, client, f"{QUESTION} smoke {variant}") for variant in VARIANTS}

    results = asyncio.run(run())
    with psycopg.connect(stack["dsn"], autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{stack["schema"]}", public')
        for variant, result in results.items():
            assert result["types"][0] == "start" and result["types"][-1] == "done", (variant, result)
            assert result["types"].count("token") == 30, (variant, result["types"])
            done = result["done"]
            assert done["status"] == "ok" and done["sources"], (variant, done)
            assert done["usage"]["output_tokens"] == 30, (variant, done)
            message = conn.execute(
                "SELECT m.status, m.content, m.sources, a.provider, m.output_tokens, e.total_tokens"
                " FROM ai_message m JOIN ai_agentaction a ON a.id = m.agent_action_id"
                " JOIN billing_usageevent e ON e.request_key = 'action:' || a.id WHERE m.id = %s",
                [done["message_id"]],
            ).fetchone()
            assert message is not None, variant
            status, content, sources, provider, output_tokens, billed = message
            assert (status, content, provider, output_tokens) == ("ok", REPLY, "anthropic", 30), (variant, message)
            assert billed == sum(done["usage"].values()), (variant, message, done)
            assert [s["document_id"] for s in sources] == [s["document_id"] for s in done["sources"]]
        reserved = conn.execute("SELECT coalesce(sum(reserved_tokens), 0) FROM billing_tenantusageperiod").fetchone()
        assert reserved[0] == 0
        assert conn.execute("SELECT count(*) FROM billing_allowancereservation").fetchone()[0] == 0
    print(f"\nsmoke: every variant answered; {stack['subscribed']} subscription(s); load {_loadavg()}")


@pytest.mark.benchmark
def test_strata_against_the_fastapi_baseline(stack):
    loads = [_loadavg()]

    async def run():
        runs: dict[tuple[str, int], list[dict]] = {}
        async with _client() as client:
            for variant in VARIANTS:  # warm: models, pools, connections
                for i in range(4):
                    await chat(variant, stack, client, f"{QUESTION} warm up {i}")
            for round_ in range(ROUNDS):
                for level in LEVELS:
                    order = VARIANTS[round_ % 4 :] + VARIANTS[: round_ % 4]  # who goes first moves each round
                    for variant in order:
                        runs.setdefault((variant, level), []).append(
                            await run_level(variant, level, stack, client, f"r{round_} c{level}")
                        )
                loads.append(_loadavg())
            if PROFILE_DIR:
                for variant in VARIANTS:
                    pid = stack["pids"]["strata" if variant.startswith("Strata") else "baseline"]
                    before, total = _thread_cpu(pid), cpu_seconds(pid)
                    await run_level(variant, 200, stack, client, "by thread")
                    total = cpu_seconds(pid) - total
                    threads[variant] = _by_thread_name(pid, before, _thread_cpu(pid), total=total, chats=200)
                for variant in VARIANTS:
                    pid = stack["pids"]["strata" if variant.startswith("Strata") else "baseline"]
                    with _profiled(pid, Path(PROFILE_DIR) / f"{variant.replace(' ', '-')}.txt"):
                        await run_level(variant, 200, stack, client, "profiled")
        return runs

    threads: dict[str, dict[str, float]] = {}
    runs = asyncio.run(run())
    if PROFILE_DIR:
        names = sorted({name for variant in VARIANTS for name in threads[variant]})
        print_table(
            "Server CPU per chat by thread, 200 chats at once (ms; /proc per thread, names from py-spy dump)",
            ["thread", *VARIANTS],
            [[name, *[threads[v].get(name, 0.0) for v in VARIANTS]] for name in names]
            + [["all", *[sum(threads[v].values()) for v in VARIANTS]]],
        )
        _profile_summary(Path(PROFILE_DIR))
    if not runs:
        return

    def merged(variant, level, key):
        return [value for run in runs[(variant, level)] for value in run[key]]

    def cpu(variant, level):
        return statistics.median(run["cpu_per_chat_ms"] for run in runs[(variant, level)])

    rows = []
    for level in LEVELS:
        cpus = [cpu(v, level) for v in VARIANTS]
        rows.append([f"server CPU per chat, {level} at once (ms)", *cpus, cpus[0] / cpus[2], cpus[1] / cpus[3]])
    for level in LEVELS:
        for pct in (50, 95):
            values = [percentile(merged(v, level, "ttfts"), pct) for v in VARIANTS]
            rows.append(
                [f"first token p{pct}, {level} at once (ms)", *values, values[0] / values[2], values[1] / values[3]]
            )
    errors = {v: sum(len(merged(v, level, "errors")) for level in LEVELS) for v in VARIANTS}
    rows.append(["errors", *errors.values(), "", ""])
    print_table(
        f"Chat turn: Strata against FastAPI + SQLAlchemy 2 async (asyncpg), {ROUNDS} interleaved rounds; CPU is "
        f"the median of the rounds, first tokens over all of them ({os.cpu_count()} cores shared with PostgreSQL, "
        f"the clients and the fake API; load average (1, 5, 15 min) per round: {' | '.join(loads)})",
        ["measure", *VARIANTS, "Strata/baseline WS", "Strata/baseline SSE"],
        rows,
    )
    for transport, strata, baseline in (("WS", 0, 2), ("SSE", 1, 3)):
        ratio = cpu(VARIANTS[strata], 200) / cpu(VARIANTS[baseline], 200)
        print(
            f"goal: {transport} server CPU per chat at 200 <= {GOAL_CPU_RATIO}x the baseline's: {ratio:.2f}x -> "
            f"{'met' if ratio <= GOAL_CPU_RATIO else 'NOT met'}"
        )
    for variant in VARIANTS:
        assert not errors[variant], [merged(variant, level, "errors")[:3] for level in LEVELS]


@pytest.mark.benchmark
def test_memory_per_open_stream(stack, slow_servers):
    """RSS growth of a server per open stream: OPEN_STREAMS WebSocket chats held open (each past its
    first token, its upstream stream open), then as many SSE chats on top of them; Strata and the
    baseline the same way, each on a fresh process."""
    servers = {**stack, **slow_servers}

    def rss(pid: int) -> int:
        return psutil.Process(pid).memory_info().rss

    def threads(pid: int) -> int:
        return psutil.Process(pid).num_threads()

    async def held(variant: str, client: httpx.AsyncClient, hold: asyncio.Event, count: int) -> tuple[list, int]:
        """``count`` chats started and waited for until each is past its first token (or one failed)."""
        opened = []
        tasks = [
            asyncio.create_task(
                chat(
                    variant,
                    servers,
                    client,
                    f"{QUESTION} held {variant} {i}",
                    hold=hold,
                    opened=lambda: opened.append(1),
                )
            )
            for i in range(count)
        ]
        deadline = time.monotonic() + TOKEN_DELAY_SLOW * 20
        while len(opened) < count and time.monotonic() < deadline and not any(task.done() for task in tasks):
            await asyncio.sleep(0.05)
        return tasks, len(opened)

    async def run():
        growth = {}
        async with _client() as client:
            for app in ("Strata", "baseline"):
                pid = servers["pids"][app.lower()]
                hold = asyncio.Event()
                # Warm: a few streams of each kind held open, so what a first chat loads is not counted.
                warm = [await held(f"{app} {transport}", client, hold, 4) for transport in ("WS", "SSE")]
                await asyncio.sleep(0.5)
                before, threads_before = rss(pid), threads(pid)
                tasks_ws, open_ws = await held(f"{app} WS", client, hold, OPEN_STREAMS)
                await asyncio.sleep(0.5)
                after_ws, threads_ws = rss(pid), threads(pid)
                tasks_sse, open_sse = await held(f"{app} SSE", client, hold, OPEN_STREAMS)
                await asyncio.sleep(0.5)
                after_sse, threads_sse = rss(pid), threads(pid)
                hold.set()
                everything = [*tasks_ws, *tasks_sse, *(task for tasks, _ in warm for task in tasks)]
                await asyncio.gather(*everything, return_exceptions=True)
                growth[f"{app} WS"] = (after_ws - before) / max(open_ws, 1), open_ws, threads_ws - threads_before
                growth[f"{app} SSE"] = (after_sse - after_ws) / max(open_sse, 1), open_sse, threads_sse - threads_ws
        return growth

    growth = asyncio.run(run())
    kib = {variant: growth[variant][0] / 1024 for variant in VARIANTS}
    print_table(
        f"Memory per open stream: server RSS growth while {OPEN_STREAMS} streams are held open "
        f"(KiB per stream; load average {_loadavg()})",
        ["measure", *VARIANTS, "Strata/baseline WS", "Strata/baseline SSE"],
        [
            [
                "RSS per open stream (KiB)",
                *kib.values(),
                kib["Strata WS"] / kib["baseline WS"],
                kib["Strata SSE"] / kib["baseline SSE"],
            ],
            ["streams open when measured", *[growth[v][1] for v in VARIANTS], "", ""],
            ["server threads added by them", *[growth[v][2] for v in VARIANTS], "", ""],
        ],
    )
    for variant in VARIANTS:
        assert growth[variant][1] == OPEN_STREAMS, growth
