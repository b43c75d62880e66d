"""How a chat answer ends when its upstream stream or the database fails: always saved, billed and
explained. Real chats over WebSocket and SSE against the fake Anthropic server; the database
failures are real ones (a trigger on the tenant's message table)."""

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django_tenants.utils import tenant_context

from ai.chat.services import CUT_OFF_MESSAGE
from ai.models import AgentAction, Message
from billing.models import UsageEvent
from tests.ai.chat_client import answer_text, ask, receive, ws_connect
from tests.fakes.anthropic_server import split_tokens

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]

LONG_REPLY = " ".join(f"word{i}" for i in range(60))


@dataclass
class Saved:
    message: Message
    action: AgentAction | None
    usage: UsageEvent | None


def saved_answer(world, message_id: int) -> Saved:
    with tenant_context(world.tenant):
        message = Message.objects.get(id=message_id)
        action = AgentAction.objects.filter(id=message.agent_action_id).first()
    usage = UsageEvent.objects.filter(request_key=f"action:{action.id}").first() if action else None
    return Saved(message, action, usage)


async def saved(world, message_id: int) -> Saved:
    return await database_sync_to_async(saved_answer)(world, message_id)


def http_client(server, world) -> httpx.AsyncClient:
    headers = {
        "Host": f"{world.tenant.subdomain}.localhost:{server.port}",
        "Authorization": f"Token {world.member_token}",
    }
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=20)


async def settled(world, message_id: int, timeout: float = 10) -> Saved:
    """The answer once its stream has settled it (a cancelled one too: its socket is told nothing)."""
    deadline = time.monotonic() + timeout
    while (answer := await saved(world, message_id)).action is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return answer


async def chat(transport: str, server, world, message: str) -> list[dict]:
    """One question, asked over ``transport``; the frames the client saw up to done or error."""
    if transport == "websocket":
        async with await ws_connect(server, world.tenant.subdomain, token=world.member_token) as ws:
            return await ask(ws, message)
    async with (
        http_client(server, world) as http,
        http.stream("POST", "/api/chat/", json={"message": message}) as response,
    ):
        assert response.status_code == 200
        return [json.loads(line[6:]) async for line in response.aiter_lines() if line.startswith("data: ")]


def assert_billed(answer: Saved, status: str) -> None:
    """The message, its AgentAction and its ledger row agree on the tokens spent."""
    message, action, usage = answer.message, answer.action, answer.usage
    assert message.status == status
    assert action is not None and action.status == status
    assert action.output_text == message.content
    assert message.input_tokens > 0 and message.output_tokens > 0
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (action.input_tokens, action.output_tokens)
    assert usage.output_tokens == message.output_tokens


TRANSPORTS = ["websocket", "sse"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_malformed_event_after_five_tokens_saves_and_bills_the_five_tokens(
    live_worlds, asgi_server, fake_anthropic, transport
):
    acme = live_worlds["acme"]
    fake_anthropic.reply = LONG_REPLY
    fake_anthropic.malformed_event_after = 5

    frames = await chat(transport, asgi_server, acme, "tell me a lot")

    shown = "".join(split_tokens(LONG_REPLY)[:5])
    assert answer_text(frames) == shown
    assert frames[-1]["type"] == "error"
    assert frames[-1]["error"]["code"] == "upstream_error"
    answer = await saved(acme, frames[0]["message_id"])
    assert answer.message.content == shown
    assert_billed(answer, "error")
    assert answer.action.error and answer.message.error == answer.action.error


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stream_cut_before_message_stop_is_saved_as_cut_off_not_ok(
    live_worlds, asgi_server, fake_anthropic, transport
):
    acme = live_worlds["acme"]
    fake_anthropic.reply = LONG_REPLY
    fake_anthropic.cut_stream_after = 4

    frames = await chat(transport, asgi_server, acme, "and then?")

    shown = "".join(split_tokens(LONG_REPLY)[:4])
    assert answer_text(frames) == shown
    assert frames[-1]["type"] == "error"
    assert frames[-1]["error"]["code"] == "upstream_incomplete"
    assert "cut off" in frames[-1]["error"]["message"]
    answer = await saved(acme, frames[0]["message_id"])
    assert answer.message.content == shown
    assert_billed(answer, "error")
    assert "cut off" in answer.action.error and "cut off" in answer.message.error
    async with http_client(asgi_server, acme) as http:
        conversation = (await http.get(f"/api/conversations/{frames[0]['conversation_id']}/")).json()
    assert conversation["messages"][-1] | {"html": None, "created": None, "sources": None} == {
        "id": frames[0]["message_id"],
        "role": "assistant",
        "content": shown,
        "status": "error",
        "error": CUT_OFF_MESSAGE,
        "input_tokens": answer.message.input_tokens,
        "output_tokens": answer.message.output_tokens,
        "html": None,
        "created": None,
        "sources": None,
    }


async def test_a_stream_cut_before_any_token_is_not_an_empty_ok_answer(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.cut_stream_after = 0

    frames = await chat("websocket", asgi_server, acme, "anything?")

    assert [frame["type"] for frame in frames] == ["start", "error"]
    assert frames[-1]["error"]["code"] == "upstream_incomplete"
    answer = await saved(acme, frames[0]["message_id"])
    assert answer.message.status == "error" and answer.message.content == ""
    assert answer.usage is not None and answer.usage.input_tokens > 0  # the prompt was read and is billed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_overloaded_error_mid_stream_says_try_again(live_worlds, asgi_server, fake_anthropic, transport):
    acme = live_worlds["acme"]
    fake_anthropic.reply = LONG_REPLY
    fake_anthropic.error_mid_stream_after = 3
    fake_anthropic.error_mid_stream_type = "overloaded_error"

    frames = await chat(transport, asgi_server, acme, "busy?")

    assert frames[-1]["error"]["code"] == "upstream_unavailable"
    assert "try again" in frames[-1]["error"]["message"].lower()
    answer = await saved(acme, frames[0]["message_id"])
    assert answer.message.content == "".join(split_tokens(LONG_REPLY)[:3])
    assert_billed(answer, "error")


@asynccontextmanager
async def failing_finish(world, *, times: int):
    """A trigger on ``world``'s message table that fails the first ``times`` settling updates (the
    ones that link the answer to its AgentAction), whatever transaction they are in: a sequence
    counts them, and sequences are not rolled back."""
    schema = world.tenant.schema_name
    table = f'"{schema}"."{Message._meta.db_table}"'

    def create():
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE SEQUENCE "{schema}".test_finish_attempts')
            cursor.execute(
                f'CREATE FUNCTION "{schema}".test_fail_finish() RETURNS trigger LANGUAGE plpgsql AS $$'
                f" BEGIN IF NEW.agent_action_id IS NOT NULL"
                f" AND nextval('\"{schema}\".test_finish_attempts') <= {times}"
                " THEN RAISE EXCEPTION 'injected failure while saving an answer'; END IF; RETURN NEW; END $$"
            )
            cursor.execute(
                f"CREATE TRIGGER test_fail_finish BEFORE UPDATE ON {table}"
                f' FOR EACH ROW EXECUTE FUNCTION "{schema}".test_fail_finish()'
            )

    def attempts():
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT last_value FROM "{schema}".test_finish_attempts')
            return cursor.fetchone()[0]

    def drop():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS test_fail_finish ON {table}")
            cursor.execute(f'DROP FUNCTION IF EXISTS "{schema}".test_fail_finish()')
            cursor.execute(f'DROP SEQUENCE IF EXISTS "{schema}".test_finish_attempts')

    await database_sync_to_async(create)()
    try:
        yield database_sync_to_async(attempts)
    finally:
        await database_sync_to_async(drop)()


async def test_a_database_error_when_the_answer_ends_is_retried_and_billed_once(
    live_worlds, asgi_server, fake_anthropic
):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "A short answer that is saved on the second try."

    async with failing_finish(acme, times=1) as attempts:
        frames = await chat("websocket", asgi_server, acme, "save me")
        assert await attempts() == 2

    assert frames[-1]["type"] == "done" and frames[-1]["status"] == "ok"
    answer = await saved(acme, frames[0]["message_id"])
    assert answer.message.content == fake_anthropic.reply
    assert_billed(answer, "ok")

    def ledger_rows():
        with tenant_context(acme.tenant):
            actions = list(AgentAction.objects.filter(conversation_id=frames[0]["conversation_id"]))
        keys = [f"action:{a.id}" for a in actions]  # action ids are per schema: the tenant's rows only
        return actions, UsageEvent.objects.for_tenant(acme.tenant).filter(request_key__in=keys).count()

    actions, usage_rows = await database_sync_to_async(ledger_rows)()
    assert len(actions) == 1 and usage_rows == 1  # the failed attempt left nothing behind


async def test_an_answer_that_cannot_be_saved_is_logged_loudly_and_keeps_its_text_and_tokens(
    live_worlds, asgi_server, fake_anthropic, caplog
):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "Every word of this was shown to the person."
    caplog.set_level(logging.ERROR, logger="ai.chat.services")

    async with failing_finish(acme, times=1000):
        frames = await chat("websocket", asgi_server, acme, "unsaveable")

    assert answer_text(frames) == fake_anthropic.reply
    assert frames[-1]["type"] == "error"
    answer = await saved(acme, frames[0]["message_id"])
    assert answer.action is None  # never recorded: what a crashed answer looks like, settled the same way
    assert answer.message.status == "interrupted"
    assert answer.message.content == fake_anthropic.reply
    assert answer.message.input_tokens > 0 and answer.message.output_tokens > 0
    assert "could not be saved" in answer.message.error
    assert any(
        record.levelno >= logging.ERROR and str(frames[0]["message_id"]) in record.getMessage()
        for record in caplog.records
    )


async def test_a_streaming_answer_is_checkpointed_into_its_message(live_worlds, asgi_server, fake_anthropic, settings):
    settings.CHAT_CHECKPOINT_SECONDS = 0.3
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(300))
    fake_anthropic.token_delay = 0.02
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"message": "a long answer"}))
        start = await receive(ws)
        seen = ""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            seen += (await receive(ws))["token"]
            answer = await saved(acme, start["message_id"])
            if answer.message.content:
                break
        await ws.send(json.dumps({"type": "cancel"}))
        assert (await settled(acme, start["message_id"])).message.status == "interrupted"

    message = answer.message
    assert message.content and seen.startswith(message.content)
    assert message.status == "interrupted" and message.agent_action_id is None
    assert message.input_tokens > 0 and message.output_tokens > 0
    assert "server stopped" in message.error  # what it says if this process dies now


async def test_a_slow_upstream_keeps_its_stream_slot_without_tokens(live_worlds, asgi_server, fake_anthropic, settings):
    settings.CHAT_MAX_STREAMS_PER_USER = 1
    settings.CHAT_STREAM_SLOT_TTL_SECONDS = 1
    acme = live_worlds["acme"]
    fake_anthropic.first_token_delay = 3
    async with (
        await ws_connect(asgi_server, "acme", token=acme.owner_token) as first,
        await ws_connect(asgi_server, "acme", token=acme.owner_token) as second,
    ):
        await first.send(json.dumps({"message": "think hard"}))
        start = await receive(first)
        assert start["type"] == "start"
        await asyncio.sleep(2)  # twice the slot's TTL, without a token

        frames = await ask(second, "me too")

        assert frames[-1]["type"] == "error" and frames[-1]["error"]["code"] == "too_many_streams"
        await first.send(json.dumps({"type": "cancel"}))
        assert (await settled(acme, start["message_id"])).message.status == "interrupted"
