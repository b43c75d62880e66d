import asyncio
import json

import httpx
import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import tenant_context

from ai.models import Message, PromptTemplate

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]


def client(server, subdomain, token=None):
    headers = {"Host": f"{subdomain}.localhost:{server.port}"}
    if token:
        headers["Authorization"] = f"Token {token}"
    return httpx.AsyncClient(base_url=server.url, headers=headers, timeout=20)


async def read_events(response):
    events = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: ") :]))
    return events


async def test_sse_streams_the_same_frames_as_the_websocket(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "Streaming over server-sent events works."
    async with (
        client(asgi_server, "acme", acme.member_token) as http,
        http.stream("POST", "/api/chat/", json={"message": "Does SSE work?"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_events(response)

    assert events[0]["type"] == "start"
    assert "".join(e["token"] for e in events if e["type"] == "token") == fake_anthropic.reply
    assert events[-1]["type"] == "done"
    assert events[-1]["usage"]["output_tokens"] > 0


async def test_sse_tokens_arrive_incrementally(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "a b c d e f g h"
    fake_anthropic.token_delay = 0.1
    arrivals = []
    loop = asyncio.get_running_loop()
    async with (
        client(asgi_server, "acme", acme.member_token) as http,
        http.stream("POST", "/api/chat/", json={"message": "slowly"}) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "token":
                arrivals.append(loop.time())
    assert len(arrivals) == 8
    assert arrivals[-1] - arrivals[0] > 0.5  # not buffered into one burst


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "bad_request"),
        ({"message": ""}, 400, "bad_request"),
        ({"message": "hi", "conversation_id": 999999}, 404, "conversation_not_found"),
        ({"message": "a NUL \x00 here"}, 400, "invalid_characters"),
        ({"message": "a lone surrogate \ud800 here"}, 400, "invalid_characters"),
    ],
)
async def test_sse_refusals_are_plain_json_errors(live_worlds, asgi_server, body, status, code):
    acme = live_worlds["acme"]
    async with client(asgi_server, "acme", acme.member_token) as http:
        # json.dumps escapes a lone surrogate as \ud800, as a JSON client may send it
        response = await http.post("/api/chat/", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_sse_needs_a_member_of_the_host_tenant(live_worlds, asgi_server):
    acme = live_worlds["acme"]
    async with client(asgi_server, "globex", acme.member_token) as http:
        assert (await http.post("/api/chat/", json={"message": "hi"})).status_code == 403
    async with client(asgi_server, "acme") as http:
        assert (await http.post("/api/chat/", json={"message": "hi"})).status_code == 401


async def test_an_sse_client_that_leaves_and_never_resumes_is_cancelled_after_the_grace_period(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_RESUME_GRACE_SECONDS = 1.0
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(400))
    fake_anthropic.token_delay = 0.02
    async with (
        client(asgi_server, "acme", acme.member_token) as http,
        http.stream("POST", "/api/chat/", json={"message": "long"}) as response,
    ):
        start = None
        tokens = 0
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                frame = json.loads(line[6:])
                start = start or frame
                tokens += frame["type"] == "token"
                if tokens == 5:
                    break
    assert not await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 0.6)
    assert await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 5)

    def answer():
        with tenant_context(acme.tenant):
            return Message.objects.get(id=start["message_id"])

    for _ in range(100):
        message = await database_sync_to_async(answer)()
        if message.content:
            break
        await asyncio.sleep(0.05)
    assert message.status == "interrupted"
    assert message.content.startswith("w0 w1 w2 w3 w4")
    assert message.output_tokens > 0


async def test_an_sse_client_that_accepts_only_event_streams_gets_the_stream(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "Streams for fetch-event-source too."
    async with (
        client(asgi_server, "acme", acme.member_token) as http,
        http.stream(
            "POST", "/api/chat/", json={"message": "Hello?"}, headers={"Accept": "text/event-stream"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await read_events(response)

    assert events[-1]["type"] == "done"


async def test_a_refusal_to_an_event_stream_client_is_still_a_json_error(live_worlds, asgi_server):
    acme = live_worlds["acme"]
    async with client(asgi_server, "acme", acme.member_token) as http:
        response = await http.post("/api/chat/", json={"message": ""}, headers={"Accept": "text/event-stream"})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"


async def test_too_many_streams_over_sse_is_a_429_with_retry_after(live_worlds, asgi_server, fake_anthropic, settings):
    settings.CHAT_MAX_STREAMS_PER_USER = 1
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(100))
    fake_anthropic.token_delay = 0.02
    async with (
        client(asgi_server, "acme", acme.owner_token) as http,
        http.stream("POST", "/api/chat/", json={"message": "long one"}) as first,
    ):
        assert first.status_code == 200
        second = await http.post("/api/chat/", json={"message": "me too"})

    assert second.status_code == 429
    assert second.json()["error"]["code"] == "too_many_streams"
    assert int(second.headers["Retry-After"]) > 0


def _chat_prompts(world, *, activate: str | None = None):  # noqa: ANN001
    """Within ``world``'s schema: every chat prompt made inactive, then ``activate`` (if given) added
    as the new active version; returns a function that puts the prompts back as they were."""
    with tenant_context(world.tenant):
        before = list(PromptTemplate.objects.filter(name="chat").values("id", "active"))
        PromptTemplate.objects.filter(name="chat").update(active=False)
        added = None
        if activate is not None:
            newest = max(p.version for p in PromptTemplate.objects.filter(name="chat"))
            added = PromptTemplate.objects.create(name="chat", version=newest + 1, system_prompt=activate)

    def restore():
        with tenant_context(world.tenant):
            if added is not None:
                added.delete()
            for prompt in before:
                PromptTemplate.objects.filter(id=prompt["id"]).update(active=prompt["active"])

    return restore


async def test_each_tenant_chats_with_its_own_active_prompt(live_worlds, asgi_server, fake_anthropic):
    acme, globex = live_worlds["acme"], live_worlds["globex"]
    fake_anthropic.reply = "Noted."
    restore = await database_sync_to_async(_chat_prompts)(acme, activate="Answer as Acme's pirate.")
    try:
        for world, subdomain in ((acme, "acme"), (globex, "globex")):
            async with (
                client(asgi_server, subdomain, world.member_token) as http,
                http.stream("POST", "/api/chat/", json={"message": "Who are you?"}) as response,
            ):
                assert (await read_events(response))[-1]["type"] == "done"
    finally:
        await database_sync_to_async(restore)()

    acme_system, globex_system = (str(request["system"]) for request in fake_anthropic.requests[-2:])
    assert "Answer as Acme's pirate." in acme_system
    assert "pirate" not in globex_system and globex_system.strip()


async def test_without_an_active_chat_prompt_a_chat_is_a_409_and_stores_nothing(
    live_worlds, asgi_server, fake_anthropic
):
    acme = live_worlds["acme"]

    def messages() -> int:
        with tenant_context(acme.tenant):
            return Message.objects.count()

    restore = await database_sync_to_async(_chat_prompts)(acme)
    try:
        stored = await database_sync_to_async(messages)()
        async with client(asgi_server, "acme", acme.member_token) as http:
            response = await http.post(
                "/api/chat/", json={"message": "Hello?"}, headers={"Accept": "text/event-stream"}
            )
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "prompt_missing"
        assert await database_sync_to_async(messages)() == stored
    finally:
        await database_sync_to_async(restore)()
    assert fake_anthropic.requests == []
