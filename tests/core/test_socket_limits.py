"""Socket limits: frames past a socket's rate are refused (``rate_limited``, ``retry_after``) and a
flood closes it (4429); a person's sockets per tenant are capped (429 ``too_many_sockets``), across
processes through the cache and per process when the cache is down; an idle socket closes (4408)."""

import asyncio
import contextlib
import json

import pytest
import websockets
from django.test import override_settings

from tenants import socket_limits
from tests.ai.chat_client import ask, receive, ws_connect
from tests.processes import free_port

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]

NOT_JSON = "not a frame"  # the consumer answers it with bad_request: proof that the frame reached it


@pytest.fixture
def slow_frames(settings):
    settings.SOCKET_FRAMES_PER_SECOND = 5
    settings.SOCKET_FRAME_BURST = 5
    settings.SOCKET_FLOOD_CLOSE_AFTER = 20
    return settings


def codes(frames):
    return [frame["error"]["code"] for frame in frames]


async def test_a_flood_of_frames_is_refused_with_retry_after_then_closed(live_worlds, asgi_server, slow_frames):
    acme = live_worlds["acme"]
    frames = []
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(200):
                await ws.send(NOT_JSON)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                frames.append(await receive(ws, timeout=5))

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    refused = [frame for frame in frames if frame["error"]["code"] == "rate_limited"]
    assert len(refused) == slow_frames.SOCKET_FLOOD_CLOSE_AFTER
    assert all(frame["error"]["retry_after"] >= 1 for frame in refused)
    # The burst went through (a fifth of a second of refill at most besides); nothing else did.
    assert 5 <= codes(frames).count("bad_request") <= 7


async def test_a_client_that_waits_retry_after_is_served_again(live_worlds, asgi_server, slow_frames):
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        for _ in range(8):
            await ws.send(NOT_JSON)
        frames = [await receive(ws) for _ in range(8)]
        refused = [frame for frame in frames if frame["error"]["code"] == "rate_limited"]
        assert refused and codes(frames).count("bad_request") + len(refused) == 8
        await asyncio.sleep(refused[-1]["error"]["retry_after"])  # as the refusal asks
        await ws.send(NOT_JSON)
        assert codes([await receive(ws)]) == ["bad_request"]
        assert ws.close_code is None


async def connect_within(server, subdomain, token, seconds=5.0):
    """A socket once one of the person's places is free again (closing one frees it a moment later)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            return await ws_connect(server, subdomain, token=token)
        except websockets.InvalidStatus:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


def assert_too_many_sockets(refused: websockets.InvalidStatus) -> None:
    response = refused.response
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert json.loads(response.body)["error"]["code"] == "too_many_sockets"


async def test_a_persons_21st_socket_on_a_tenant_is_refused_and_a_closed_one_frees_its_place(live_worlds, asgi_server):
    acme = live_worlds["acme"]
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(await ws_connect(asgi_server, "acme", token=acme.member_token))
            for _ in range(20)
        ]
        with pytest.raises(websockets.InvalidStatus) as refused:
            await ws_connect(asgi_server, "acme", token=acme.member_token)
        assert_too_many_sockets(refused.value)
        async with await ws_connect(asgi_server, "acme", token=acme.owner_token) as other_person:
            assert other_person.close_code is None

        await sockets[0].close()
        async with await connect_within(asgi_server, "acme", acme.member_token) as again:
            await again.send(NOT_JSON)
            assert codes([await receive(again)]) == ["bad_request"]


def dead_cache() -> dict:
    """Redis as the cache, and nothing listening where it should be (``override_settings`` restores the
    real one before the fixtures clear the cache)."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }


@pytest.fixture(autouse=True)
def cache_up():
    """Each test starts with the cache taken for reachable (a test that brought it down leaves this
    process counting on its own for CACHE_RETRY_SECONDS)."""
    socket_limits._cache_down_until = 0.0
    yield
    socket_limits._cache_down_until = 0.0


async def test_places_taken_while_the_cache_was_down_still_count_once_it_is_back(live_worlds, asgi_server, settings):
    settings.SOCKET_MAX_PER_PERSON = 2
    acme = live_worlds["acme"]
    async with contextlib.AsyncExitStack() as stack:
        with override_settings(CACHES=dead_cache()):
            await stack.enter_async_context(await ws_connect(asgi_server, "acme", token=acme.member_token))
        socket_limits._cache_down_until = 0.0  # the cache is back and tried again
        await stack.enter_async_context(await ws_connect(asgi_server, "acme", token=acme.member_token))

        with pytest.raises(websockets.InvalidStatus) as refused:
            await ws_connect(asgi_server, "acme", token=acme.member_token)
        assert_too_many_sockets(refused.value)


async def test_with_the_cache_down_the_cap_still_holds_within_the_process(live_worlds, asgi_server, settings):
    settings.SOCKET_MAX_PER_PERSON = 2
    acme = live_worlds["acme"]
    with override_settings(CACHES=dead_cache()):
        async with (
            await ws_connect(asgi_server, "acme", token=acme.member_token) as first,
            await ws_connect(asgi_server, "acme", token=acme.member_token),
        ):
            with pytest.raises(websockets.InvalidStatus) as refused:
                await ws_connect(asgi_server, "acme", token=acme.member_token)
            assert_too_many_sockets(refused.value)
            await first.send(NOT_JSON)
            assert codes([await receive(first)]) == ["bad_request"]


async def test_an_idle_socket_is_closed_but_not_while_an_answer_streams(
    live_worlds, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    acme = live_worlds["acme"]
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        # A process's first answer loads the SDK and starts threads: more than the 2 s below alone.
        assert (await ask(ws, "Warm up."))[-1]["type"] == "done"
    # Two seconds: a busy machine (the other test workers) has taken more than one between the
    # question and the answer's first frame.
    settings.SOCKET_IDLE_TIMEOUT_SECONDS = idle = 2.0
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(40))
    fake_anthropic.token_delay = 0.1  # four seconds of answer, no client frame meanwhile
    async with await ws_connect(asgi_server, "acme", token=acme.member_token) as ws:
        frames = await ask(ws, "Take your time.")
        assert frames[-1]["type"] == "done"
        ended = asyncio.get_running_loop().time()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws, timeout=idle + 5)

    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    assert asyncio.get_running_loop().time() - ended < idle + 2
