"""Revocation reaches answers in flight: suspending or closing the tenant, removing the member or
revoking the key stops an answer streaming over the WebSocket or SSE within two seconds, with an
``access_revoked`` error frame (the socket then closes with 4403); what was streamed is saved and billed."""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import transaction
from django_tenants.utils import tenant_context

from ai.models import Message
from billing.models import UsageEvent
from config.lifecycle import workspace_close
from tenants.models import Membership, Tenant
from tenants.services import tenant_reactivate, tenant_suspend
from tenants.services.api_keys import api_key_create, api_key_revoke
from tenants.services.members import membership_remove
from tests.ai.chat_client import answer_text, frames_until_end, receive
from tests.ai.factories import world_create
from tests.conftest import World

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]

REVOCATIONS = ["suspension", "member_removal", "key_revocation", "workspace_closing"]
LONG_REPLY = " ".join(f"w{i}" for i in range(1000))  # 20 s at 20 ms a token: it never ends by itself
SEEN_BEFORE_REVOKING = 6  # the start frame and five tokens


@dataclass
class Asker:
    world: World
    authorization: str
    revocation: str
    api_key_id: int | None = None

    def revoke(self) -> None:
        """What an owner, an operator or billing does (sync, committed)."""
        tenant = Tenant.objects.get(pk=self.world.tenant.pk)
        if self.revocation == "suspension":
            tenant_suspend(tenant=tenant)
        elif self.revocation == "member_removal":
            membership = Membership.objects.get(tenant=tenant, user=self.world.member)
            membership_remove(tenant=tenant, actor=self.world.owner, membership_id=membership.pk)
        elif self.revocation == "key_revocation":
            api_key_revoke(tenant=tenant, api_key_id=self.api_key_id)
        else:
            workspace_close(tenant=tenant, actor=self.world.owner)


def asker_create(revocation: str) -> Asker:
    """A tenant of its own (committed): the member asks, or a write key for a key's revocation."""
    world = world_create("Revoked")
    if revocation != "key_revocation":
        return Asker(world, f"Token {world.member_token}", revocation)
    api_key, raw = api_key_create(tenant=world.tenant, created_by=world.owner, name="bot", scope="write")
    return Asker(world, f"Bearer {raw}", revocation, api_key_id=api_key.pk)


@pytest.fixture
def long_answers(fake_anthropic, settings):
    settings.CHAT_CONTEXT_CHUNKS = 0  # retrieval is not what this is about
    fake_anthropic.reply = LONG_REPLY
    fake_anthropic.token_delay = 0.02
    return fake_anthropic


async def revoke(server: Any, asker: Asker) -> float:
    """Revoke as a sync view of the server would; the loop time when it returned (committed)."""
    await server.run_as_a_view(asker.revoke)
    return asyncio.get_running_loop().time()


def saved(asker: Asker, message_id: int) -> tuple[Message, UsageEvent | None]:
    with tenant_context(asker.world.tenant):
        message = Message.objects.get(id=message_id)
    usage = UsageEvent.objects.filter(request_key=f"action:{message.agent_action_id}").first()
    return message, usage


async def assert_saved_and_billed(asker: Asker, frames: list[dict[str, Any]]) -> None:
    message, usage = await database_sync_to_async(saved)(asker, frames[0]["message_id"])
    streamed = answer_text(frames)
    assert streamed and message.content == streamed
    assert message.status == Message.Status.INTERRUPTED
    assert message.output_tokens > 0
    assert frames[-1]["error"]["usage"]["output_tokens"] == message.output_tokens
    assert usage is not None
    assert usage.output_tokens == message.output_tokens and usage.input_tokens > 0


def assert_revoked_frame(frame: dict[str, Any], message_id: int) -> None:
    assert frame["type"] == "error", frame
    assert frame["error"]["code"] == "access_revoked"
    assert frame["error"]["message_id"] == message_id


@pytest.mark.parametrize("revocation", REVOCATIONS)
async def test_revocation_stops_a_websocket_answer_within_two_seconds(
    live_worlds, asgi_server, long_answers, revocation
):
    asker = await database_sync_to_async(asker_create)(revocation)
    async with websockets.connect(
        f"ws://{asker.world.tenant.subdomain}.localhost:{asgi_server.port}/ws/chat/",
        additional_headers={"Authorization": asker.authorization},
        host="127.0.0.1",
        port=asgi_server.port,
        proxy=None,
        max_queue=None,
    ) as ws:
        await ws.send(json.dumps({"message": "Tell me everything."}))
        seen = [await receive(ws) for _ in range(SEEN_BEFORE_REVOKING)]
        revoked_at = await revoke(asgi_server, asker)
        async with asyncio.timeout(5):
            rest = await frames_until_end(ws)
        ended = asyncio.get_running_loop().time()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws, timeout=5)

    assert ended - revoked_at < 2
    assert_revoked_frame(rest[-1], seen[0]["message_id"])
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    await assert_saved_and_billed(asker, seen + rest)


@pytest.mark.parametrize("revocation", REVOCATIONS)
async def test_revocation_stops_an_sse_answer_within_two_seconds(live_worlds, asgi_server, long_answers, revocation):
    asker = await database_sync_to_async(asker_create)(revocation)
    headers = {
        "Host": f"{asker.world.tenant.subdomain}.localhost:{asgi_server.port}",
        "Authorization": asker.authorization,
    }
    frames: list[dict[str, Any]] = []
    revoking = None
    async with (
        httpx.AsyncClient(base_url=asgi_server.url, headers=headers, timeout=20) as http,
        http.stream("POST", "/api/chat/", json={"message": "Tell me everything."}) as response,
        asyncio.timeout(8),
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[len("data: ") :]))
                if len(frames) == SEEN_BEFORE_REVOKING:
                    revoking = asyncio.create_task(revoke(asgi_server, asker))
    ended = asyncio.get_running_loop().time()

    assert revoking is not None
    assert ended - await revoking < 2
    assert_revoked_frame(frames[-1], frames[0]["message_id"])
    await assert_saved_and_billed(asker, frames)


async def test_a_revocation_lifted_in_the_same_transaction_stops_nothing(live_worlds, asgi_server, long_answers):
    long_answers.reply = " ".join(f"w{i}" for i in range(100))  # two seconds
    asker = await database_sync_to_async(asker_create)("suspension")

    def suspend_and_reactivate() -> None:
        with transaction.atomic():
            tenant = tenant_suspend(tenant=Tenant.objects.get(pk=asker.world.tenant.pk))
            tenant_reactivate(tenant=tenant)

    async with websockets.connect(
        f"ws://{asker.world.tenant.subdomain}.localhost:{asgi_server.port}/ws/chat/",
        additional_headers={"Authorization": asker.authorization},
        host="127.0.0.1",
        port=asgi_server.port,
        proxy=None,
        max_queue=None,
    ) as ws:
        await ws.send(json.dumps({"message": "Tell me everything."}))
        seen = [await receive(ws) for _ in range(SEEN_BEFORE_REVOKING)]
        await asgi_server.run_as_a_view(suspend_and_reactivate)
        rest = await frames_until_end(ws)
        await ws.send("not a frame")  # the socket is still open and answers
        refusal = await receive(ws)

    assert refusal["error"]["code"] == "bad_request"
    assert rest[-1]["type"] == "done" and rest[-1]["status"] == "ok"
    assert answer_text(seen + rest) == long_answers.reply


async def test_removing_a_member_closes_their_idle_sockets_at_once_and_no_one_elses(live_worlds, asgi_server):
    asker = await database_sync_to_async(asker_create)("member_removal")
    world = asker.world

    def connect(token: str) -> Any:
        return websockets.connect(
            f"ws://{world.tenant.subdomain}.localhost:{asgi_server.port}/ws/chat/",
            additional_headers={"Authorization": f"Token {token}"},
            host="127.0.0.1",
            port=asgi_server.port,
            proxy=None,
        )

    async with connect(world.member_token) as removed, connect(world.owner_token) as owner:
        await revoke(asgi_server, asker)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(removed, timeout=5)  # without sending anything
        await owner.send("not a frame")
        refusal = await receive(owner)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
    assert refusal["error"]["code"] == "bad_request"
