"""Resuming across processes: two uvicorn processes sharing Redis (stream log, cache) and
PostgreSQL, as real processes. An answer produced by one is resumed, followed and cancelled
through the other; each client here talks to one process directly, so "the other process" is
certain rather than up to a load balancer."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import websockets
from django_tenants.utils import tenant_context

from ai.models import Message
from tests.ai.chat_client import frames_until_end, receive
from tests.processes import (
    ROOT,
    SPAWNED_APPLICATION_NAME,
    database_backends_end,
    free_port,
    process_stop,
    ready_or_restarted,
)
from tests.processes import live_database_url as database_url_for_processes
from tests.redis_server import REDIS_AVAILABLE, RedisServer

GRACE_SECONDS = 1.5
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(not REDIS_AVAILABLE, reason="redis-server is installed by tests/run.sh"),
]


def ready_uvicorn(env: dict[str, str]) -> tuple[int, subprocess.Popen]:
    """A server of its own for one test, ready: its port and process."""
    port = free_port()
    return ready_or_restarted(lambda port: uvicorn(port, env), port, uvicorn(port, env), headers={"Host": "localhost"})


def uvicorn(port: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets-sansio",
            "--ws-per-message-deflate",
            "false",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker, anthropic_server):
    redis = RedisServer().start()
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_processes(),
        "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
        "REDIS_URL": redis.url,
        "ANTHROPIC_API_KEY": "sk-ant-resume",
        "ANTHROPIC_BASE_URL": anthropic_server.base_url,
        "CHAT_RESUME_GRACE_SECONDS": str(GRACE_SECONDS),
        "TASK_MODE": "eager",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
    }
    servers: list[subprocess.Popen] = []

    def start(port: int) -> subprocess.Popen:
        servers.append(uvicorn(port, env))
        return servers[-1]

    started = [(port, start(port)) for port in (free_port(), free_port())]
    try:
        with django_db_blocker.unblock():
            # The lifespan warms the embedding model.
            ready = [
                ready_or_restarted(start, port, process, headers={"Host": "localhost"}) for port, process in started
            ]
            yield {"ports": tuple(port for port, _ in ready), "env": env}
    finally:
        for server in servers:
            process_stop(server, timeout=15)
        redis.stop()
        with django_db_blocker.unblock():
            database_backends_end(spawned_only=True)


@pytest.fixture
def processes(stack):
    return stack["ports"]


@pytest.fixture
def fake(anthropic_server):
    anthropic_server.reset()
    anthropic_server.reply = " ".join(f"word{i}" for i in range(80))
    anthropic_server.token_delay = 0.02
    yield anthropic_server
    anthropic_server.reset()


@pytest.fixture
def acme(django_db_setup):
    return django_db_setup["acme"]


def connect(port: int, token: str):
    return websockets.connect(
        f"ws://acme.localhost:{port}/ws/chat/",
        additional_headers={"Authorization": f"Token {token}"},
        host="127.0.0.1",
        port=port,
        proxy=None,
        max_queue=None,
    )


def http(port: int, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Host": f"acme.localhost:{port}", "Authorization": f"Token {token}"},
        timeout=20,
    )


def saved(world, message_id: int) -> Message:
    deadline = time.monotonic() + 5
    while True:
        with tenant_context(world.tenant):
            message = Message.objects.get(id=message_id)
        if message.agent_action_id or time.monotonic() > deadline:
            return message
        time.sleep(0.05)


def assert_seamless(frames: list[dict], reply: str) -> None:
    assert [frame["seq"] for frame in frames] == list(range(1, len(frames) + 1))
    assert frames[-1]["type"] == "done"
    assert "".join(frame["token"] for frame in frames if frame["type"] == "token") == reply


def test_a_websocket_answer_from_one_process_resumes_on_the_other(processes, acme, fake):
    first, second = processes

    async def scenario():
        async with connect(first, acme.member_token) as ws:
            await ws.send(json.dumps({"message": "a long answer"}))
            seen = [await receive(ws) for _ in range(6)]
        async with connect(second, acme.member_token) as ws:
            await ws.send(json.dumps({"type": "resume", "message_id": seen[0]["message_id"], "after": seen[-1]["seq"]}))
            return seen, await frames_until_end(ws)

    seen, rest = asyncio.run(scenario())
    assert_seamless(seen + rest, fake.reply)
    assert saved(acme, seen[0]["message_id"]).content == fake.reply
    assert fake.disconnects == 0


def test_an_sse_answer_from_one_process_resumes_on_the_other_with_last_event_id(processes, acme, fake):
    first, second = processes

    async def events(lines, stop_after_tokens=None):
        found, event_id, tokens = [], None, 0
        async for line in lines:
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                found.append((event_id, json.loads(line[6:])))
                tokens += found[-1][1]["type"] == "token"
                if tokens == stop_after_tokens:
                    break
        return found

    async def scenario():
        async with (
            http(first, acme.member_token) as client,
            client.stream("POST", "/api/chat/", json={"message": "stream it"}) as response,
        ):
            seen = await events(response.aiter_lines(), stop_after_tokens=5)
        message_id = seen[0][1]["message_id"]
        async with (
            http(second, acme.member_token) as client,
            client.stream(
                "GET", f"/api/chat/{message_id}/stream/", headers={"Last-Event-ID": str(seen[-1][0])}
            ) as response,
        ):
            assert response.status_code == 200
            return seen + await events(response.aiter_lines())

    found = asyncio.run(scenario())
    assert all(event_id == frame["seq"] for event_id, frame in found)
    assert_seamless([frame for _, frame in found], fake.reply)


def test_a_cancel_through_the_other_process_stops_the_answer_at_once(processes, acme, fake):
    first, second = processes
    fake.reply = " ".join(f"w{i}" for i in range(1000))

    async def scenario():
        async with connect(first, acme.member_token) as ws:
            await ws.send(json.dumps({"message": "never ending"}))
            start = await receive(ws)
            await receive(ws)
            async with http(second, acme.member_token) as client:
                asked = time.monotonic()
                response = await client.post(f"/api/chat/{start['message_id']}/cancel/")
                answered = time.monotonic() - asked
            # The socket on the first process sees the answer end as interrupted.
            rest = await frames_until_end(ws)
            return start, response, answered, rest

    start, response, answered, rest = asyncio.run(scenario())
    assert response.json() == {"message_id": start["message_id"], "cancelled": True}
    assert answered < 2
    assert fake.wait_for_disconnect(1)
    assert rest[-1]["type"] == "done" and rest[-1]["status"] == "interrupted"
    message = saved(acme, start["message_id"])
    assert message.status == "interrupted"
    assert message.output_tokens > 0


def test_a_follower_on_the_other_process_keeps_the_answer_past_the_grace_period(processes, acme, fake):
    first, second = processes
    fake.token_delay = 0.05  # 80 tokens: about four seconds, more than twice the grace period

    async def scenario():
        async with connect(first, acme.member_token) as ws:
            await ws.send(json.dumps({"message": "slowly"}))
            seen = [await receive(ws) for _ in range(3)]
        async with connect(second, acme.member_token) as ws:
            await ws.send(json.dumps({"type": "resume", "message_id": seen[0]["message_id"], "after": seen[-1]["seq"]}))
            return seen, await frames_until_end(ws)

    seen, rest = asyncio.run(scenario())
    assert_seamless(seen + rest, fake.reply)
    assert rest[-1]["status"] == "ok"
    assert fake.disconnects == 0


def test_when_nobody_resumes_anywhere_the_answer_is_cancelled_after_the_grace_period(processes, acme, fake):
    first, _ = processes
    fake.reply = " ".join(f"w{i}" for i in range(1000))

    async def scenario():
        async with connect(first, acme.member_token) as ws:
            await ws.send(json.dumps({"message": "then leave"}))
            return [await receive(ws) for _ in range(4)]

    seen = asyncio.run(scenario())
    left = time.monotonic()
    assert fake.wait_for_disconnect(GRACE_SECONDS + 5)
    assert time.monotonic() - left >= GRACE_SECONDS - 0.2
    message = saved(acme, seen[0]["message_id"])
    assert message.status == "interrupted"
    assert message.content.startswith("w0 w1 w2")
    assert message.output_tokens > 0


def test_a_process_that_is_stopped_mid_answer_finishes_it_for_a_client_that_moved_to_another(
    stack, acme, fake, django_db_blocker
):
    """A deploy: the process closes its sockets (1012) and drains; the client resumes elsewhere."""
    with django_db_blocker.unblock():
        port, leaving = ready_uvicorn(stack["env"])
    try:
        fake.token_delay = 0.03

        async def scenario():
            async with connect(port, acme.member_token) as ws:
                await ws.send(json.dumps({"message": "during a deploy"}))
                seen = [await receive(ws) for _ in range(4)]
                leaving.send_signal(signal.SIGTERM)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        seen.append(await receive(ws))
            async with connect(stack["ports"][0], acme.member_token) as ws:
                await ws.send(
                    json.dumps({"type": "resume", "message_id": seen[0]["message_id"], "after": seen[-1]["seq"]})
                )
                return closed.value.rcvd.code, seen, await frames_until_end(ws)

        code, seen, rest = asyncio.run(scenario())
        assert code == 1012  # service restart: come back elsewhere
        assert_seamless(seen + rest, fake.reply)
        assert rest[-1]["status"] == "ok"
        assert leaving.wait(timeout=15) in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM once it shut down
        assert saved(acme, seen[0]["message_id"]).content == fake.reply
    finally:
        if leaving.poll() is None:
            process_stop(leaving, timeout=15)


def test_a_follower_elsewhere_learns_that_the_producing_process_died(stack, acme, fake, django_db_blocker):
    with django_db_blocker.unblock():
        port, doomed = ready_uvicorn(stack["env"])
    try:
        fake.reply = " ".join(f"w{i}" for i in range(1000))
        fake.token_delay = 0.05

        async def scenario():
            async with connect(port, acme.member_token) as ws:
                await ws.send(json.dumps({"message": "a process about to die"}))
                start = await receive(ws)
            async with connect(stack["ports"][1], acme.member_token) as ws:
                await ws.send(json.dumps({"type": "resume", "message_id": start["message_id"], "after": 1}))
                first = await receive(ws)
                assert first.get("seq") == 2, first  # found at once, though its process is new to Redis
                doomed.kill()  # no shutdown, no drain: the log stops growing and its heartbeat stops
                return [first, *await frames_until_end(ws)]

        rest = asyncio.run(scenario())
        assert rest[-1]["type"] == "error"
        assert rest[-1]["error"]["code"] == "stream_lost"
        assert [frame["seq"] for frame in rest] == list(range(2, len(rest) + 2))
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.wait(timeout=10)
