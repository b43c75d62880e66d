"""kill -9 of the web process in the middle of an answer, with real processes: the web command of
deploy/Procfile under uvicorn, sharing Redis (stream slots) and PostgreSQL with the one started
after it. What the person saw is in the answer's message, up to the last checkpoint, and they
can ask again within seconds."""

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import time

import pytest
import websockets
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.llm import estimate_tokens
from ai.models import Message
from billing.models import AllowanceReservation, UsageEvent
from billing.services.reservations import reservations_expire
from tests.ai.chat_client import receive
from tests.fakes.anthropic_server import split_tokens
from tests.processes import (
    ROOT,
    SPAWNED_APPLICATION_NAME,
    committed,
    database_backends_end,
    free_port,
    live_database_url,
    process_stop,
    procfile_argv,
    wait_for,
)
from tests.redis_server import REDIS_AVAILABLE, RedisServer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(not REDIS_AVAILABLE, reason="redis-server is installed by tests/run.sh"),
]

FREED_WITHIN_SECONDS = 12  # the slot TTL's default (10 s) and some slack
CHECKPOINT_SECONDS = 2.0
TOKEN_DELAY = 0.05


def web(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    values = {**env, "PORT": str(port)}
    argv = procfile_argv("web", values, overrides={"--host": "127.0.0.1"})
    return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **values}), port  # noqa: S603 - our own command


@pytest.fixture
def env(django_db_setup, anthropic_server):
    redis = RedisServer().start()
    anthropic_server.reset()
    try:
        yield {
            "DATABASE_URL": live_database_url(),
            "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
            "REDIS_URL": redis.url,
            "ANTHROPIC_API_KEY": "sk-ant-crash",
            "ANTHROPIC_BASE_URL": anthropic_server.base_url,
            "CHAT_MAX_STREAMS_PER_USER": "1",
            "CHAT_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS),
            "TASK_MODE": "eager",
            "DEBUG": "false",
            "LOG_LEVEL": "ERROR",
            "WEB_CONCURRENCY": "1",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
        }
    finally:
        anthropic_server.reset()
        redis.stop()
        database_backends_end(spawned_only=True)


def connect(port: int, token: str):
    return websockets.connect(
        f"ws://acme.localhost:{port}/ws/chat/",
        additional_headers={"Authorization": f"Token {token}"},
        host="127.0.0.1",
        port=port,
        proxy=None,
        max_queue=None,
    )


def ready(port: int, process: subprocess.Popen) -> None:
    wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "localhost"}, process=process)


def test_an_answer_whose_process_is_killed_keeps_its_checkpoint_and_frees_the_slot_within_seconds(
    env, anthropic_server, django_db_setup, django_db_blocker
):
    acme = django_db_setup["acme"]
    anthropic_server.reply = " ".join(f"w{i}" for i in range(1000))
    anthropic_server.token_delay = TOKEN_DELAY
    # The one that takes over is started now, not after the kill: it takes longer to start (the
    # embedding model warms) than the slot may stay taken.
    (first, first_port), (second, second_port) = web(env), web(env)
    try:
        with django_db_blocker.unblock():
            ready(first_port, first)
            ready(second_port, second)

        asked = timezone.now()

        async def until_killed():
            async with connect(first_port, acme.member_token) as ws:
                await ws.send(json.dumps({"message": "a long answer, please"}))
                start = await receive(ws)
                seen = []
                while len(seen) < 100:  # about five seconds of tokens: two checkpoints or more
                    seen.append((await receive(ws))["token"])
                first.send_signal(signal.SIGKILL)
                return start, "".join(seen)

        start, seen = asyncio.run(until_killed())
        killed = time.monotonic()
        first.wait(timeout=10)

        async def ask_until_accepted():
            deadline = killed + FREED_WITHIN_SECONDS + 20
            while time.monotonic() < deadline:
                async with connect(second_port, acme.member_token) as ws:
                    await ws.send(json.dumps({"message": "still there?"}))
                    frame = await receive(ws)
                    if frame["type"] == "start":
                        return time.monotonic() - killed
                    assert frame["error"]["code"] == "too_many_streams", frame
                await asyncio.sleep(0.25)
            return None

        anthropic_server.token_delay = 0
        accepted_after = asyncio.run(ask_until_accepted())

        with django_db_blocker.unblock(), tenant_context(acme.tenant):
            message = Message.objects.get(id=start["message_id"])
        with django_db_blocker.unblock():
            # Its allowance reservation was left too: once taken for dead, what it checkpointed is billed.
            billed = committed(_bill_the_dead_answers_reservation, acme, since=asked)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process_stop(process, timeout=15)

    assert accepted_after is not None and accepted_after < FREED_WITHIN_SECONDS, accepted_after
    assert message.status == Message.Status.INTERRUPTED and message.agent_action_id is None
    assert message.error == Message.UNFINISHED
    assert message.content and seen.startswith(message.content)
    # At most one checkpoint period (and the time to write it) of what was shown is lost.
    lost = len(split_tokens(seen)) - len(split_tokens(message.content))
    assert lost <= (CHECKPOINT_SECONDS + 1) / TOKEN_DELAY, lost
    # No message_delta said the output: counted from the text, never less than the deltas received.
    pieces = len(split_tokens(message.content))
    assert message.input_tokens > 0 and message.output_tokens == max(pieces, estimate_tokens(message.content))
    assert (billed.input_tokens, billed.output_tokens) == (message.input_tokens, message.output_tokens)


def _bill_the_dead_answers_reservation(acme, *, since):  # noqa: ANN001, ANN202
    left = AllowanceReservation.objects.filter(
        tenant=acme.tenant, user=acme.member, spent_output_tokens__gt=0, created__gte=since
    )
    reservation = left.get()
    left.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert reservations_expire() >= 1
    return UsageEvent.objects.get(tenant=acme.tenant, request_key=f"reservation:{reservation.pk}")
