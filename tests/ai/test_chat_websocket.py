import asyncio
import json
import threading
import time

import pytest
import websockets
from channels.db import database_sync_to_async
from django_tenants.utils import tenant_context

from ai.chat import services as chat_service
from ai.models import AgentAction, Conversation, Message
from billing.models import UsageEvent
from tests.ai.chat_client import answer_text, ask, frames_until_end, receive, ws_connect
from tests.tenants.test_request_round_trips import hand_offs_to_threads

# django_db: makes pytest-django create the test database; the live server commits on its own connections.
pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]


def rows(world, conversation_id):
    with tenant_context(world.tenant):
        conversation = Conversation.objects.filter(id=conversation_id).first()
        messages = list(
            Message.objects.filter(conversation_id=conversation_id)
            .order_by("id")
            .values("role", "content", "status", "output_tokens", "sources")
        )
        return conversation, messages


async def db(fn, *args):
    # Channels' wrapper closes the thread's connection afterwards: it goes back to the pool.
    return await database_sync_to_async(fn)(*args)


async def test_a_member_chats_over_the_websocket_token_by_token(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "Our refund window is thirty days from delivery."
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "How long do customers have to ask for a refund?")

    assert frames[0]["type"] == "start"
    tokens = [f for f in frames if f["type"] == "token"]
    assert len(tokens) > 3
    assert answer_text(frames) == fake_anthropic.reply
    done = frames[-1]
    assert done["type"] == "done" and done["done"] is True
    assert done["message_id"] == frames[0]["message_id"]
    assert done["usage"]["output_tokens"] == len(tokens)
    assert done["usage"]["input_tokens"] > 0
    conversation, messages = await db(rows, acme, frames[0]["conversation_id"])
    assert conversation.user_id == acme.member.id
    assert [(m["role"], m["status"]) for m in messages] == [("user", "ok"), ("assistant", "ok")]
    assert messages[1]["content"] == fake_anthropic.reply
    request = fake_anthropic.requests[-1]
    assert request["stream"] is True
    assert "refund" in request["messages"][-1]["content"]


async def test_a_chat_over_the_websocket_hands_nothing_to_asgirefs_sync_thread(
    live_worlds, asgi_server, fake_anthropic
):
    """The consumer's database work runs in database steps, on threads of their own that give their
    connections back after each step. Channels' consumer would also hop to asgiref's one sync thread
    (shared by every socket of the process) before each frame, to close connections it never opened."""
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ask(ws, "Warming up: is there a refund window?")

    with hand_offs_to_threads() as handed:
        async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
            frames = await ask(ws, "How long do customers have to ask for a refund?")
            assert frames[-1]["type"] == "done"

    assert handed == []


async def test_the_conversation_history_goes_to_the_model(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        first = await ask(ws, "My name is Ada.")
        second = await ask(ws, "What is my name?", conversation_id=first[0]["conversation_id"])

    assert second[0]["conversation_id"] == first[0]["conversation_id"]
    sent = fake_anthropic.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[0]["content"] == "My name is Ada."


async def test_session_cookie_authenticates_on_its_own_tenant(live_worlds, asgi_server, fake_anthropic):
    import httpx

    acme = live_worlds["acme"]
    async with httpx.AsyncClient(
        base_url=asgi_server.url, headers={"Host": f"acme.localhost:{asgi_server.port}"}
    ) as http:
        login = await http.post("/api/auth/login/", json={"email": acme.member.email, "password": "s3cret-Passw0rd!"})
    cookie = login.cookies["sessionid"]
    origin = asgi_server.host_url("acme")

    async with await ws_connect(asgi_server, "acme", cookie=cookie, origin=origin) as ws:
        frames = await ask(ws, "hello")
    assert frames[-1]["type"] == "done"

    # The same cookie on another tenant's host, or sent cross-site, opens nothing.
    for subdomain, from_origin in (("globex", asgi_server.host_url("globex")), ("acme", "http://evil.example")):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await ws_connect(asgi_server, subdomain, cookie=cookie, origin=from_origin)
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("subdomain", "who"),
    [("globex", "acme-token"), ("acme", "nobody"), ("nowhere", "acme-token"), ("acme", "bad-token")],
)
async def test_handshakes_without_a_membership_are_refused(live_worlds, asgi_server, subdomain, who):
    token = {"acme-token": live_worlds["acme"].owner_token, "nobody": None, "bad-token": "0" * 40}[who]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await ws_connect(asgi_server, subdomain, token=token)
    assert refused.value.response.status_code == 403


async def test_a_suspended_tenant_refuses_the_handshake(live_worlds, asgi_server):
    from tenants.services import tenant_reactivate, tenant_suspend

    globex = live_worlds["globex"]
    await db(lambda: tenant_suspend(tenant=globex.tenant))
    try:
        with pytest.raises(websockets.InvalidStatus):
            await ws_connect(asgi_server, "globex", token=globex.owner_token)
    finally:
        await db(lambda: tenant_reactivate(tenant=globex.tenant))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        (json.dumps(["a list"]), "bad_request"),
        (json.dumps({"conversation_id": 1}), "bad_request"),
        (json.dumps({"message": "   "}), "bad_request"),
        (json.dumps({"message": "x" * 9000}), "message_too_long"),
        (json.dumps({"message": "hi", "conversation_id": "seven"}), "bad_request"),
        (json.dumps({"message": "hi", "conversation_id": 987654}), "conversation_not_found"),
        (json.dumps({"message": "a NUL \x00 here"}), "invalid_characters"),
        ('{"message": "a lone surrogate \\ud800 here"}', "invalid_characters"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(
    live_worlds, asgi_server, fake_anthropic, frame, code
):
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(frame)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["error"]["code"] == code
        assert error["error"]["message"]
        assert (await ask(ws, "still there?"))[-1]["type"] == "done"


async def test_another_members_conversation_is_not_found(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.owner_token) as ws:
        owners = await ask(ws, "private question")
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "let me in", conversation_id=owners[0]["conversation_id"])
    assert frames == [
        {"type": "error", "error": {"code": "conversation_not_found", "message": "No such conversation."}}
    ]


async def test_an_error_mid_stream_sends_an_error_frame_and_closes_within_a_second(
    live_worlds, asgi_server, fake_anthropic
):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "one two three four five six seven eight"
    fake_anthropic.error_mid_stream_after = 3
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "tell me")
        error_at = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
        assert time.monotonic() - error_at < 1.0
    assert closed.value.rcvd.code == 4502
    assert frames[-1]["error"]["code"] == "upstream_unavailable"  # the fake's mid-stream error is overloaded_error
    assert len([f for f in frames if f["type"] == "token"]) == 3
    _, messages = await db(rows, acme, frames[0]["conversation_id"])
    assert messages[1]["status"] == "error"
    assert messages[1]["content"] == "one two three "
    assert messages[1]["output_tokens"] > 0


async def test_overloaded_upstream_is_retried_then_answers(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.fail_before_first_token = [529]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "retry please")
    assert frames[-1]["type"] == "done"
    assert len(fake_anthropic.requests) == 2


async def test_upstream_errors_before_the_first_token_are_reported_after_retries(
    live_worlds, asgi_server, fake_anthropic
):
    acme = live_worlds["acme"]
    fake_anthropic.fail_before_first_token = [529, 500, 529]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "anyone?")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)
    assert [f["type"] for f in frames] == ["start", "error"]
    assert frames[-1]["error"]["code"] == "upstream_unavailable"
    assert len(fake_anthropic.requests) == 3  # the SDK's two retries


async def test_a_client_that_leaves_and_never_resumes_is_cancelled_after_the_grace_period_and_keeps_the_tokens(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_RESUME_GRACE_SECONDS = 1.0
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"word{i}" for i in range(400))
    fake_anthropic.token_delay = 0.02
    ws = await ws_connect(asgi_server, "acme", token=acme.member_token)
    await ws.send(json.dumps({"message": "a long answer please"}))
    start = await receive(ws)
    for _ in range(5):
        assert (await receive(ws))["type"] == "token"
    await ws.close()
    left = time.monotonic()

    # The answer goes on, waiting for a resume; nobody comes, so the upstream is cancelled after the grace.
    assert not await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 0.6)
    assert await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 5)
    # The server's grace (1 s) runs from when it saw the close, a moment before close() returned here.
    assert time.monotonic() - left >= 0.9

    def settled():
        _, messages = rows(acme, start["conversation_id"])
        return messages[1]

    deadline = time.monotonic() + 5
    while (answer := await db(settled))["content"] == "" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert answer["status"] == "interrupted"
    assert answer["content"].startswith("word0 word1 word2 word3 word4 word5")
    assert answer["output_tokens"] > 0

    def usage_recorded():
        with tenant_context(acme.tenant):
            action = AgentAction.objects.get(conversation_id=start["conversation_id"])
        return (
            action.status,
            action.error,
            UsageEvent.objects.filter(request_key=f"action:{action.id}")
            .values_list("output_tokens", flat=True)
            .first(),
        )

    status, error, output_tokens = await db(usage_recorded)
    assert status == "interrupted"
    assert "did not resume" in error
    assert output_tokens and output_tokens > 0


async def test_the_stop_frame_cancels_the_answer_and_keeps_the_socket(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(300))
    fake_anthropic.token_delay = 0.02
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"message": "go on"}))
        assert (await receive(ws))["type"] == "start"
        await receive(ws)
        await ws.send(json.dumps({"type": "cancel"}))
        assert await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 3)
        fake_anthropic.reply = "fresh answer"
        fake_anthropic.token_delay = 0
        # Tokens already in flight may arrive before the next answer starts.
        await ws.send(json.dumps({"message": "again"}))
        frames = await frames_until_end(ws)
        assert frames[-1]["type"] == "done"
        last_start = max(i for i, frame in enumerate(frames) if frame["type"] == "start")
        assert answer_text(frames[last_start:]) == "fresh answer"


async def test_too_many_concurrent_streams_per_user_are_refused(live_worlds, asgi_server, fake_anthropic, settings):
    settings.CHAT_MAX_STREAMS_PER_USER = 1
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(100))
    fake_anthropic.token_delay = 0.02
    async with (
        await ws_connect(asgi_server, "acme", token=acme.owner_token) as first,
        await ws_connect(asgi_server, "acme", token=acme.owner_token) as second,
    ):
        await first.send(json.dumps({"message": "long one"}))
        assert (await receive(first))["type"] == "start"
        frames = await ask(second, "me too")
        assert frames[-1]["error"]["code"] == "too_many_streams"
        await first.send(json.dumps({"type": "cancel"}))


async def test_a_socket_closed_while_its_question_is_accepted_gives_the_stream_slot_back(
    live_worlds, asgi_server, fake_anthropic, settings, monkeypatch
):
    settings.CHAT_MAX_STREAMS_PER_USER = 1
    acme = live_worlds["acme"]
    prompt_active = chat_service.prompt_active
    stepping, stepped = threading.Event(), threading.Event()

    def slow_prompt_active(**kwargs):
        stepping.set()
        time.sleep(0.5)  # the turn's database step is still running when the socket closes
        try:
            return prompt_active(**kwargs)
        finally:
            stepped.set()

    monkeypatch.setattr(chat_service, "prompt_active", slow_prompt_active)
    async with await ws_connect(asgi_server, "acme", token=acme.owner_token) as first:
        await first.send(json.dumps({"message": "never mind"}))
        assert await asyncio.to_thread(stepping.wait, 10)
    monkeypatch.setattr(chat_service, "prompt_active", prompt_active)
    assert await asyncio.to_thread(stepped.wait, 10)
    # The step has ended: nobody took its turn, which gives its slot back (a moment after).
    deadline = time.monotonic() + 2
    while True:
        async with await ws_connect(asgi_server, "acme", token=acme.owner_token) as second:
            frames = await ask(second, "now me")
        if frames[-1]["type"] == "done" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)

    assert frames[-1]["type"] == "done", frames[-1]


async def test_without_a_key_the_offline_provider_answers_from_the_documents(live_worlds, asgi_server):
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "What is in our documents?")
    assert frames[-1]["type"] == "done"
    assert frames[-1]["provider"] == "offline"
    assert "offline" in answer_text(frames).lower() or "no language model" in answer_text(frames).lower()


async def test_two_tenants_chatting_at_once_keep_every_row_in_their_own_schema(
    live_worlds, asgi_server, fake_anthropic, settings
):
    """Consumers of both tenants share the database thread; interleave them and check every row."""
    settings.CHAT_MAX_STREAMS_PER_USER = 20
    acme, globex = live_worlds["acme"], live_worlds["globex"]
    fake_anthropic.token_delay = 0.005
    fake_anthropic.reply_fn = lambda body: "echo: " + body["messages"][-1]["content"].rsplit("\n", 1)[-1]

    async def chat(world, i):
        async with await ws_connect(asgi_server, world.tenant.subdomain, token=world.member_token) as ws:
            frames = await ask(ws, f"{world.tenant.subdomain}-question-{i}")
            return world, i, frames

    results = await asyncio.gather(*[chat(w, i) for i in range(8) for w in (acme, globex)])

    for world, i, frames in results:
        other = globex if world is acme else acme
        assert frames[-1]["type"] == "done", frames[-1]
        assert answer_text(frames) == f"echo: {world.tenant.subdomain}-question-{i}"
        conversation, messages = await db(rows, world, frames[0]["conversation_id"])
        assert conversation is not None and conversation.user_id == world.member.id
        assert messages[0]["content"] == f"{world.tenant.subdomain}-question-{i}"
        assert messages[1]["content"] == answer_text(frames)
        stray, stray_messages = await db(rows, other, frames[0]["conversation_id"])
        assert all(f"{world.tenant.subdomain}-question-{i}" != m["content"] for m in stray_messages)


async def test_an_upstream_that_times_out_is_retried_then_reported(live_worlds, asgi_server, fake_anthropic, settings):
    settings.ANTHROPIC_TIMEOUT = 0.3
    settings.ANTHROPIC_MAX_RETRIES = 1
    fake_anthropic.hang_before_response = 2
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "are you there?")
    assert frames[-1]["error"]["code"] == "upstream_unavailable"
    assert len(fake_anthropic.requests) == 2


async def test_a_tenant_over_its_hard_limit_gets_quota_exceeded_and_keeps_the_socket(
    live_worlds, asgi_server, fake_anthropic
):
    from billing.models import TenantUsagePeriod
    from billing.services import period_start

    globex = live_worlds["globex"]

    def exhaust():
        row, _ = TenantUsagePeriod.objects.get_or_create(tenant=globex.tenant, period_start=period_start())
        previous = row.tokens_used
        row.tokens_used = globex.tenant.subscription.plan.included_tokens
        row.save(update_fields=["tokens_used"])
        return previous

    def restore(previous):
        TenantUsagePeriod.objects.filter(tenant=globex.tenant, period_start=period_start()).update(tokens_used=previous)

    previous = await db(exhaust)
    try:
        async with await ws_connect(asgi_server, "globex", token=globex.member_token) as ws:
            frames = await ask(ws, "one more question")
            assert [frame["type"] for frame in frames] == ["error"]
            assert frames[0]["error"]["code"] == "quota_exceeded"
            await db(restore, previous)
            assert (await ask(ws, "and now?"))[-1]["type"] == "done"
    finally:
        await db(restore, previous)
    assert len(fake_anthropic.requests) == 1


async def test_with_retrieval_off_the_question_goes_to_the_model_without_passages(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "just chatting")
    assert frames[-1]["type"] == "done"
    assert frames[-1]["sources"] == []
    assert "<document " not in fake_anthropic.requests[-1]["messages"][-1]["content"]
