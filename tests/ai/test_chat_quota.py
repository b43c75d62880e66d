"""The token allowance during a streamed answer: checked before the call, capping what the model may
spend, and stopping the answer with quota_exceeded when it runs out part-way."""

import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import tenant_context

from ai.models import Conversation, Message
from billing.models import TenantUsagePeriod, UsageEvent
from billing.services import period_start
from tests.ai.chat_client import ask, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]


def _leave_in_allowance(world, tokens: int) -> int:
    row, _ = TenantUsagePeriod.objects.get_or_create(tenant=world.tenant, period_start=period_start())
    previous = row.tokens_used
    row.tokens_used = world.tenant.subscription.plan.included_tokens - tokens
    row.save(update_fields=["tokens_used"])
    return previous


def _restore(world, previous: int) -> None:
    TenantUsagePeriod.objects.filter(tenant=world.tenant, period_start=period_start()).update(tokens_used=previous)


def _answer_and_usage(world, message_id: int):
    with tenant_context(world.tenant):
        message = Message.objects.get(id=message_id)
    events = list(UsageEvent.objects.filter(tenant=world.tenant).order_by("-id")[:1])
    return message, events[0]


async def test_an_answer_stops_with_quota_exceeded_when_the_allowance_runs_out_part_way(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0  # a prompt of known size: no retrieved passages
    globex = live_worlds["globex"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(1500))
    previous = await database_sync_to_async(_leave_in_allowance)(globex, 400)
    try:
        async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
            frames = await ask(ws, "Tell me everything.")
            tokens = [frame for frame in frames if frame["type"] == "token"]

            assert frames[0]["type"] == "start"
            assert len(tokens) > 10
            assert frames[-1]["type"] == "error"
            assert frames[-1]["error"]["code"] == "quota_exceeded"
            request = fake_anthropic.requests[-1]
            assert request["max_tokens"] < 400  # the model was never allowed past the allowance
            message, usage = await database_sync_to_async(_answer_and_usage)(globex, frames[0]["message_id"])
            assert message.status == "error"
            assert message.output_tokens > 0  # estimated from the text: the stream was closed early
            assert 0 < usage.total_tokens <= 400 + 10
            # The refusal keeps the socket: with allowance again, the next question is answered.
            await database_sync_to_async(_restore)(globex, previous)
            fake_anthropic.reply = "Short answer."
            assert (await ask(ws, "And now?"))[-1]["type"] == "done"
    finally:
        await database_sync_to_async(_restore)(globex, previous)


async def test_a_question_that_does_not_fit_the_allowance_left_is_refused_before_any_call(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    globex = live_worlds["globex"]
    previous = await database_sync_to_async(_leave_in_allowance)(globex, 5)
    try:
        async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
            frames = await ask(ws, "A question longer than five tokens, surely.")
    finally:
        await database_sync_to_async(_restore)(globex, previous)

    assert [frame["type"] for frame in frames] == ["error"]
    assert frames[0]["error"]["code"] == "quota_exceeded"
    assert fake_anthropic.requests == []


def _conversations_of(world) -> int:
    with tenant_context(world.tenant):
        return Conversation.objects.filter(user=world.member).count()


async def test_a_question_whose_answer_would_have_no_room_is_refused_before_anything_is_stored(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0  # a prompt of about 120 tokens: 200 left hold it, not an answer worth having
    globex = live_worlds["globex"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(300))
    before = await database_sync_to_async(_conversations_of)(globex)
    previous = await database_sync_to_async(_leave_in_allowance)(globex, 200)
    try:
        async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
            frames = await ask(ws, "What does the handbook say about holidays?")
    finally:
        await database_sync_to_async(_restore)(globex, previous)

    assert [frame["type"] for frame in frames] == ["error"]
    assert frames[0]["error"]["code"] == "quota_exceeded"
    assert fake_anthropic.requests == []
    assert await database_sync_to_async(_conversations_of)(globex) == before
