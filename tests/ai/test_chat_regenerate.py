"""Regenerating an answer and editing a question, over the WebSocket and SSE: each is a new turn
(reserved and billed like any other, passages found again with the asker's access now) that
continues the conversation from the question; the turns it replaces are superseded, kept with
their AI actions and ledger rows, and left out of the history, the page and the API."""

import json

import httpx
import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import tenant_context

from ai.models import AgentAction, Message
from billing.models import UsageEvent
from tests.ai.chat_client import answer_text, ask, frames_until_end, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]


def _messages(world, conversation_id):
    with tenant_context(world.tenant):
        return list(Message.objects.filter(conversation_id=conversation_id).order_by("id"))


def _actions_and_usage(world, conversation_id):
    with tenant_context(world.tenant):
        actions = list(AgentAction.objects.filter(conversation_id=conversation_id).values_list("id", flat=True))
    keys = [f"action:{action}" for action in actions]
    return actions, UsageEvent.objects.filter(tenant=world.tenant, request_key__in=keys).count()


async def test_regenerating_the_last_answer_replaces_it_and_keeps_the_old_one_billed(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    globex = live_worlds["globex"]
    async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
        fake_anthropic.reply = "First answer."
        first = await ask(ws, "First question?")
        conversation = first[0]["conversation_id"]
        fake_anthropic.reply = "Second answer."
        second = await ask(ws, "Second question?", conversation)
        fake_anthropic.reply = "A better second answer."

        await ws.send(json.dumps({"type": "regenerate", "message_id": second[0]["message_id"]}))
        again = await frames_until_end(ws)

    assert again[0]["type"] == "start" and again[0]["conversation_id"] == conversation
    assert again[0]["replaces"] == second[0]["question_id"]
    assert again[-1]["type"] == "done" and answer_text(again) == "A better second answer."
    request = fake_anthropic.requests[-1]
    assert [m["content"] for m in request["messages"][:-1]] == ["First question?", "First answer."]
    assert request["messages"][-1]["content"].endswith("Second question?")
    messages = await database_sync_to_async(_messages)(globex, conversation)
    shown = [(m.role, m.content) for m in messages if not m.superseded]
    assert shown == [
        ("user", "First question?"),
        ("assistant", "First answer."),
        ("user", "Second question?"),
        ("assistant", "A better second answer."),
    ]
    assert [m.content for m in messages if m.superseded] == ["Second question?", "Second answer."]
    actions, billed = await database_sync_to_async(_actions_and_usage)(globex, conversation)
    assert len(actions) == 3 and billed == 3  # the replaced answer stays recorded and billed

    headers = {"Host": f"globex.localhost:{asgi_server.port}", "Authorization": f"Token {globex.member_token}"}
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=headers, timeout=20) as http:
        detail = (await http.get(f"/api/conversations/{conversation}/")).json()
    assert [m["content"] for m in detail["messages"]] == [content for _, content in shown]


async def test_editing_a_question_over_sse_continues_from_the_edited_question(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    globex = live_worlds["globex"]
    async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
        fake_anthropic.reply = "About cats."
        first = await ask(ws, "Tell me about cats")
        conversation = first[0]["conversation_id"]
        fake_anthropic.reply = "More about cats."
        await ask(ws, "And more?", conversation)
    fake_anthropic.reply = "About dogs."

    headers = {"Host": f"globex.localhost:{asgi_server.port}", "Authorization": f"Token {globex.member_token}"}
    body = {"type": "edit", "message_id": first[0]["question_id"], "message": "Tell me about dogs"}
    async with (
        httpx.AsyncClient(base_url=asgi_server.url, headers=headers, timeout=20) as http,
        http.stream("POST", "/api/chat/", json=body) as response,
    ):
        assert response.status_code == 200
        events = [json.loads(line[6:]) async for line in response.aiter_lines() if line.startswith("data: ")]

    assert events[0]["conversation_id"] == conversation and events[0]["replaces"] == first[0]["question_id"]
    assert events[-1]["type"] == "done" and answer_text(events) == "About dogs."
    assert len(fake_anthropic.requests[-1]["messages"]) == 1  # nothing before the edited question
    messages = await database_sync_to_async(_messages)(globex, conversation)
    assert [m.content for m in messages if not m.superseded] == ["Tell me about dogs", "About dogs."]
    assert len([m for m in messages if m.superseded]) == 4


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "regenerate"},
        {"type": "regenerate", "message_id": "7"},
        {"type": "edit", "message_id": 1},
        {"type": "edit", "message_id": 1, "message": "  "},
        {"type": "dance", "message": "hi"},
        {"message": "hi", "message_id": 3},  # a plain question names no message
    ],
)
async def test_a_malformed_regenerate_or_edit_is_a_bad_request(live_worlds, asgi_server, frame):
    globex = live_worlds["globex"]
    async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
        await ws.send(json.dumps(frame))
        refusal = (await frames_until_end(ws))[-1]

    assert refusal["error"]["code"] == "bad_request"


async def test_another_persons_answer_or_a_question_as_an_answer_is_not_found(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    globex = live_worlds["globex"]
    async with await ws_connect(asgi_server, "globex", token=globex.owner_token) as ws:
        owners = await ask(ws, "The owner's question")
    async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
        await ws.send(json.dumps({"type": "regenerate", "message_id": owners[0]["message_id"]}))
        someone_elses = (await frames_until_end(ws))[-1]
        await ws.send(json.dumps({"type": "edit", "message_id": owners[0]["question_id"], "message": "Mine now"}))
        edit_someone_elses = (await frames_until_end(ws))[-1]
        mine = await ask(ws, "My question")
        await ws.send(json.dumps({"type": "regenerate", "message_id": mine[0]["question_id"]}))
        a_question = (await frames_until_end(ws))[-1]

    for refusal in (someone_elses, edit_someone_elses, a_question):
        assert refusal["type"] == "error" and refusal["error"]["code"] == "message_not_found", refusal
    messages = await database_sync_to_async(_messages)(globex, owners[0]["conversation_id"])
    assert not any(m.superseded for m in messages)
