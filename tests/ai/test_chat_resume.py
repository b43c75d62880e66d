"""Resuming an answer after a dropped connection: WebSocket and SSE, finished and expired answers,
who may resume, and cancelling (one process, in-process stream log; tests/deploy has the Redis one)."""

import asyncio
import json
import time

import httpx
import pytest
from channels.db import database_sync_to_async
from django_tenants.utils import tenant_context

from ai.chat.stream_log import stream_key, stream_log
from ai.models import Message
from tests.ai.chat_client import ask, frames_until_end, receive, ws_connect

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]

LONG_REPLY = " ".join(f"word{i}" for i in range(80))


def http_client(server, subdomain, token):
    return httpx.AsyncClient(
        base_url=server.url,
        headers={"Host": f"{subdomain}.localhost:{server.port}", "Authorization": f"Token {token}"},
        timeout=20,
    )


async def saved_answer(world, message_id, *, settled=True):
    def load():
        with tenant_context(world.tenant):
            return Message.objects.get(id=message_id)

    deadline = time.monotonic() + 5
    while True:
        message = await database_sync_to_async(load)()
        if not settled or message.agent_action_id or time.monotonic() > deadline:
            return message
        await asyncio.sleep(0.05)


async def logged_past(world, message_id, seq, *, more=10, timeout=10):
    """Until the answer's stream log holds ``more`` frames past ``seq``: streamed with no client."""
    key = stream_key(schema_name=world.tenant.schema_name, message_id=message_id)
    deadline = time.monotonic() + timeout
    while (info := await stream_log().info(key)) is None or info.last_seq < seq + more:
        assert time.monotonic() < deadline, (seq, info)
        await asyncio.sleep(0.02)


async def sse_events(response_or_lines, *, stop_after_tokens=None):
    """(id, frame) of each event; stops early after that many tokens."""
    lines = response_or_lines.aiter_lines() if hasattr(response_or_lines, "aiter_lines") else response_or_lines
    events, event_id, tokens = [], None, 0
    async for line in lines:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            frame = json.loads(line[6:])
            events.append((event_id, frame))
            tokens += frame["type"] == "token"
            if stop_after_tokens is not None and tokens == stop_after_tokens:
                break
    return events


def assert_seamless(frames, reply):
    """Every frame has the next seq from 1, and the tokens spell the reply exactly once."""
    assert [frame["seq"] for frame in frames] == list(range(1, len(frames) + 1))
    assert frames[0]["type"] == "start"
    assert frames[-1]["type"] == "done"
    assert "".join(frame["token"] for frame in frames if frame["type"] == "token") == reply


async def test_a_websocket_client_resumes_after_the_last_seq_it_saw_without_gap_or_repeat(
    live_worlds, asgi_server, fake_anthropic
):
    acme = live_worlds["acme"]
    fake_anthropic.reply = LONG_REPLY
    fake_anthropic.token_delay = 0.01
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"message": "tell me a long story"}))
        seen = [await receive(ws) for _ in range(6)]  # start and five tokens
    await logged_past(acme, seen[0]["message_id"], seen[-1]["seq"])  # more tokens stream in meanwhile

    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"type": "resume", "message_id": seen[0]["message_id"], "after": seen[-1]["seq"]}))
        rest = await frames_until_end(ws)

    assert_seamless(seen + rest, LONG_REPLY)
    assert rest[-1]["status"] == "ok"
    answer = await saved_answer(acme, seen[0]["message_id"])
    assert answer.status == "ok"
    assert answer.content == LONG_REPLY
    assert fake_anthropic.disconnects == 0


async def test_an_sse_client_resumes_with_last_event_id_without_gap_or_repeat(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = LONG_REPLY
    fake_anthropic.token_delay = 0.01
    async with (
        http_client(asgi_server, "acme", acme.member_token) as http,
        http.stream("POST", "/api/chat/", json={"message": "a long one"}) as response,
    ):
        seen = await sse_events(response, stop_after_tokens=7)
    message_id = seen[0][1]["message_id"]
    await logged_past(acme, message_id, seen[-1][1]["seq"])

    async with (
        http_client(asgi_server, "acme", acme.member_token) as http,
        http.stream("GET", f"/api/chat/{message_id}/stream/", headers={"Last-Event-ID": str(seen[-1][0])}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        rest = await sse_events(response)

    events = seen + rest
    assert all(event_id == frame["seq"] for event_id, frame in events)
    assert_seamless([frame for _, frame in events], LONG_REPLY)
    assert (await saved_answer(acme, message_id)).content == LONG_REPLY


async def test_a_resumed_answer_outlives_the_grace_period(live_worlds, asgi_server, fake_anthropic, settings):
    settings.CHAT_RESUME_GRACE_SECONDS = 0.5
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(60))
    fake_anthropic.token_delay = 0.03  # about 1.8 s of answer
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"message": "go slowly"}))
        start = await receive(ws)
    await asyncio.sleep(0.2)
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"type": "resume", "message_id": start["message_id"], "after": 1}))
        rest = await frames_until_end(ws)

    assert_seamless([start, *rest], fake_anthropic.reply)
    assert fake_anthropic.disconnects == 0
    assert (await saved_answer(acme, start["message_id"])).status == "ok"


async def test_resuming_a_finished_answer_replays_the_rest_and_done(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = "one two three four five"
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "count to five")
        message_id = frames[0]["message_id"]
        await ws.send(json.dumps({"type": "resume", "message_id": message_id, "after": 3}))
        rest = await frames_until_end(ws)
        assert rest == frames[3:]
        # A client that already saw everything gets the final frame again, so it knows the answer ended.
        await ws.send(json.dumps({"type": "resume", "message_id": message_id, "after": frames[-1]["seq"]}))
        assert await frames_until_end(ws) == [frames[-1]]


async def test_an_answer_whose_log_expired_is_not_found_and_the_saved_message_remains(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_RESUME_TTL_SECONDS = 0.3
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "short answer")
        await asyncio.sleep(0.5)
        await ws.send(json.dumps({"type": "resume", "message_id": frames[0]["message_id"], "after": 1}))
        refused = await receive(ws)
        assert refused["type"] == "error"
        assert refused["error"]["code"] == "not_found"
        assert (await ask(ws, "still usable?"))[-1]["type"] == "done"
    async with http_client(asgi_server, "acme", acme.member_token) as http:
        response = await http.get(f"/api/chat/{frames[0]['message_id']}/stream/")
        conversation = (await http.get(f"/api/conversations/{frames[0]['conversation_id']}/")).json()
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert conversation["messages"][-1]["content"] == fake_anthropic.reply


@pytest.mark.parametrize("who", ["another member", "a member of another tenant on its own host"])
async def test_only_the_asker_on_the_same_tenant_may_resume_or_cancel(live_worlds, asgi_server, fake_anthropic, who):
    acme, globex = live_worlds["acme"], live_worlds["globex"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(100))
    fake_anthropic.token_delay = 0.02
    async with await ws_connect(asgi_server, "acme", token=acme.owner_token) as owner_ws:
        await owner_ws.send(json.dumps({"message": "mine alone"}))
        start = await receive(owner_ws)
        subdomain, token = ("acme", acme.member_token) if who == "another member" else ("globex", globex.owner_token)

        async with await ws_connect(asgi_server, subdomain, token=token) as ws:
            await ws.send(json.dumps({"type": "resume", "message_id": start["message_id"], "after": 0}))
            assert await receive(ws) == {
                "type": "error",
                "error": {"code": "not_found", "message": "No such answer to resume."},
            }
        async with http_client(asgi_server, subdomain, token) as http:
            stream = await http.get(f"/api/chat/{start['message_id']}/stream/")
            cancel = await http.post(f"/api/chat/{start['message_id']}/cancel/")
        assert stream.status_code == cancel.status_code == 404
        assert stream.json()["error"]["code"] == cancel.json()["error"]["code"] == "not_found"

        # The owner's answer went on untouched.
        rest = await frames_until_end(owner_ws)
    assert rest[-1]["type"] == "done" and rest[-1]["status"] == "ok"
    assert fake_anthropic.disconnects == 0


async def test_the_sse_cancel_endpoint_stops_the_answer_at_once(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(400))
    fake_anthropic.token_delay = 0.02
    async with (
        http_client(asgi_server, "acme", acme.member_token) as http,
        http.stream("POST", "/api/chat/", json={"message": "stop me"}) as response,
    ):
        lines = response.aiter_lines()
        seen = []
        while len(seen) < 4:
            line = await anext(lines)
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
        message_id = seen[0]["message_id"]
        async with http_client(asgi_server, "acme", acme.member_token) as other:
            cancelled_at = time.monotonic()
            cancel = await other.post(f"/api/chat/{message_id}/cancel/")
            assert cancel.status_code == 200
            assert cancel.json() == {"message_id": message_id, "cancelled": True}
            assert await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 1)
            assert time.monotonic() - cancelled_at < 1
            # The stream that was following ends with the interrupted answer's final frame.
            rest = await sse_events(lines)
            again = await other.post(f"/api/chat/{message_id}/cancel/")
    assert rest[-1][1]["type"] == "done"
    assert rest[-1][1]["status"] == "interrupted"
    assert rest[-1][1]["usage"]["output_tokens"] > 0
    assert again.json() == {"message_id": message_id, "cancelled": False}
    answer = await saved_answer(acme, message_id)
    assert answer.status == "interrupted"
    assert answer.output_tokens > 0
    assert answer.content.startswith("w0 w1 w2")


async def test_a_cancel_frame_after_a_resume_stops_the_resumed_answer(live_worlds, asgi_server, fake_anthropic):
    acme = live_worlds["acme"]
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(400))
    fake_anthropic.token_delay = 0.02
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"message": "long"}))
        start = await receive(ws)
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        await ws.send(json.dumps({"type": "resume", "message_id": start["message_id"], "after": 1}))
        assert (await receive(ws))["seq"] == 2
        await ws.send(json.dumps({"type": "cancel"}))
        assert await asyncio.to_thread(fake_anthropic.wait_for_disconnect, 1)
    assert (await saved_answer(acme, start["message_id"])).status == "interrupted"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "resume"},
        {"type": "resume", "message_id": "31"},
        {"type": "resume", "message_id": 31, "after": -1},
        {"type": "resume", "message_id": True},
    ],
)
async def test_bad_resume_frames_get_bad_request(live_worlds, asgi_server, frame):
    async with await ws_connect(asgi_server, "acme", token=live_worlds["acme"].member_token) as ws:
        await ws.send(json.dumps(frame))
        error = await receive(ws)
    assert error["type"] == "error"
    assert error["error"]["code"] == "bad_request"


async def test_a_bad_last_event_id_is_a_bad_request(live_worlds, asgi_server):
    async with http_client(asgi_server, "acme", live_worlds["acme"].member_token) as http:
        named = await http.get("/api/chat/1/stream/", headers={"Last-Event-ID": "seventeen"})
        empty = await http.get("/api/chat/1/stream/?after=")
        wide = await http.get("/api/chat/1/stream/?after=\u0663")  # an Arabic-Indic digit is no seq
    assert (named.status_code, empty.status_code, wide.status_code) == (400, 400, 400)
    assert named.json()["error"]["code"] == "bad_request"
