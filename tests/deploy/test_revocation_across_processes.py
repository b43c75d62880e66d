"""Revocation across processes: two uvicorn processes sharing Redis and PostgreSQL. An answer
produced by one stops within two seconds when the asker's access is revoked through the other,
ends with ``access_revoked`` and is saved and billed with the tokens it streamed."""

import asyncio
import json
import time

import httpx
import pytest
import websockets
from django_tenants.utils import tenant_context
from rest_framework.authtoken.models import Token

from ai.models import Message
from billing.models import UsageEvent
from tenants.models import Membership
from tenants.services.api_keys import api_key_create
from tests.ai.chat_client import answer_text, frames_until_end, receive
from tests.deploy.test_resume_across_processes import stack  # noqa: F401 - the two processes and Redis
from tests.factories import UserFactory
from tests.processes import committed
from tests.redis_server import REDIS_AVAILABLE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(not REDIS_AVAILABLE, reason="redis-server is installed by tests/run.sh"),
]


@pytest.fixture
def fake(anthropic_server):
    anthropic_server.reset()
    anthropic_server.reply = " ".join(f"w{i}" for i in range(1000))  # 20 s: it never ends by itself
    anthropic_server.token_delay = 0.02
    yield anthropic_server
    anthropic_server.reset()


@pytest.fixture
def acme(django_db_setup):
    return django_db_setup["acme"]


def newcomer(world):
    user = UserFactory()
    membership = Membership.objects.create(user=user, tenant=world.tenant, role=Membership.Role.MEMBER)
    return membership, Token.objects.create(user=user).key


def saved(world, message_id):
    with tenant_context(world.tenant):
        message = Message.objects.get(id=message_id)
    return message, UsageEvent.objects.filter(request_key=f"action:{message.agent_action_id}").first()


def assert_revoked_and_billed(world, frames, ended, revoked):
    assert ended - revoked < 2
    final = frames[-1]
    assert final["type"] == "error" and final["error"]["code"] == "access_revoked"
    message, usage = saved(world, frames[0]["message_id"])
    assert message.status == Message.Status.INTERRUPTED
    assert message.content == answer_text(frames) != ""
    assert usage is not None and usage.output_tokens == message.output_tokens > 0


def test_a_member_removed_through_one_process_loses_the_answer_streaming_on_the_other(stack, acme, fake):  # noqa: F811
    first, second = stack["ports"]
    membership, token = committed(newcomer, acme)

    async def scenario():
        async with websockets.connect(
            f"ws://acme.localhost:{first}/ws/chat/",
            additional_headers={"Authorization": f"Token {token}"},
            host="127.0.0.1",
            port=first,
            proxy=None,
            max_queue=None,
        ) as ws:
            await ws.send(json.dumps({"message": "a long answer"}))
            seen = [await receive(ws) for _ in range(6)]
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{second}",
                headers={"Host": f"acme.localhost:{second}", "Authorization": f"Token {acme.owner_token}"},
            ) as owner:
                removed = await owner.delete(f"/api/members/{membership.pk}/")
            revoked = time.monotonic()
            async with asyncio.timeout(5):
                rest = await frames_until_end(ws)
            ended = time.monotonic()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await receive(ws, timeout=5)
            return removed, seen + rest, ended, revoked, closed.value.rcvd.code

    removed, frames, ended, revoked, close_code = asyncio.run(scenario())
    assert removed.status_code == 204
    assert close_code == 4403
    assert_revoked_and_billed(acme, frames, ended, revoked)
    assert fake.wait_for_disconnect(1)  # the upstream request was closed too


def test_a_key_revoked_through_one_process_loses_the_sse_answer_streaming_on_the_other(stack, acme, fake):  # noqa: F811
    first, second = stack["ports"]
    api_key, raw = committed(api_key_create, tenant=acme.tenant, created_by=acme.owner, name="bot", scope="write")

    async def scenario():
        frames, revoked = [], None
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{first}",
                headers={"Host": f"acme.localhost:{first}", "Authorization": f"Bearer {raw}"},
                timeout=20,
            ) as program,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{second}",
                headers={"Host": f"acme.localhost:{second}", "Authorization": f"Token {acme.owner_token}"},
            ) as owner,
            program.stream("POST", "/api/chat/", json={"message": "a long answer"}) as response,
            asyncio.timeout(8),
        ):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frames.append(json.loads(line[len("data: ") :]))
                    if len(frames) == 6:
                        assert (await owner.delete(f"/api/keys/{api_key.pk}/")).status_code == 204
                        revoked = time.monotonic()
        return frames, time.monotonic(), revoked

    frames, ended, revoked = asyncio.run(scenario())
    assert revoked is not None
    assert_revoked_and_billed(acme, frames, ended, revoked)
