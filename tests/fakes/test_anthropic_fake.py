"""The fake Anthropic server and Strata's LLM providers, driven through the real SDK over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from ai.llm import Usage, estimate_tokens, provider_for
from ai.llm.claude import AnthropicProvider
from ai.llm.factory import ProviderConfig
from ai.llm.offline import OfflineProvider
from core.platform.exceptions import ApplicationError
from tests.fakes.anthropic_server import FakeAnthropic, estimate_input_tokens, split_tokens

QUESTION = [{"role": "user", "content": "What does the fake say?"}]
SYSTEM = "You answer questions about Strata."
LONG_REPLY = " ".join(f"word{i}" for i in range(200))
VALID_BODY = {"model": "claude-test", "max_tokens": 64, "messages": QUESTION}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def provider(fake: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(api_key="test-key", base_url=fake.base_url, model="claude-test", max_retries=2, timeout=5)


async def collect(provider: AnthropicProvider, **kwargs: object) -> tuple[list[str], object]:
    async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512, **kwargs) as stream:
        return [text async for text in stream], stream


def expected_input_tokens() -> int:
    return estimate_input_tokens({"system": SYSTEM, "messages": QUESTION})


def test_complete_returns_the_reply_and_its_usage(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.reply = "Plain answer, not streamed."

    completion = provider.complete(system=SYSTEM, messages=QUESTION, max_tokens=100)

    assert completion.text == "Plain answer, not streamed."
    assert completion.provider == "anthropic"
    assert completion.model == "claude-test"
    assert completion.usage == Usage(input_tokens=expected_input_tokens(), output_tokens=4)
    sent = fake.requests[0]
    assert sent["system"] == SYSTEM and sent["messages"] == QUESTION and "stream" not in sent
    assert sent.headers["authorization"] == "Bearer test-key"


@pytest.mark.asyncio
async def test_stream_yields_the_reply_token_by_token_with_usage_and_cache_tokens(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.reply_fn = lambda body: f"You asked: {body['messages'][-1]['content']}"
    fake.cache_read_input_tokens = 40
    fake.cache_creation_input_tokens = 12

    deltas, stream = await collect(provider)

    reply = "You asked: What does the fake say?"
    assert deltas == split_tokens(reply)
    assert stream.text == reply
    assert stream.finished and stream.stop_reason == "end_turn"
    assert stream.usage == Usage(
        input_tokens=expected_input_tokens(),
        output_tokens=len(deltas),
        cache_creation_input_tokens=12,
        cache_read_input_tokens=40,
    )
    assert fake.requests[0]["stream"] is True
    assert fake.completed_streams == 1 and fake.disconnects == 0


def test_request_without_api_key_gets_401(fake: FakeAnthropic) -> None:
    response = httpx.post(f"{fake.base_url}/v1/messages", json=VALID_BODY, headers={"anthropic-version": "2023-06-01"})

    assert response.status_code == 401
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_body_without_a_required_field_gets_400(fake: FakeAnthropic, missing: str) -> None:
    body = {key: value for key, value in VALID_BODY.items() if key != missing}
    headers = {"x-api-key": "test-key", "anthropic-version": "2023-06-01"}

    response = httpx.post(f"{fake.base_url}/v1/messages", json=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"] == {"type": "invalid_request_error", "message": f"{missing}: Field required"}


def test_bad_request_through_the_sdk_becomes_upstream_error(provider: AnthropicProvider) -> None:
    with pytest.raises(ApplicationError) as caught:
        provider.complete(system=SYSTEM, messages=[], max_tokens=100)

    assert (caught.value.code, caught.value.status) == ("upstream_error", 502)


def test_overloaded_once_is_retried_by_the_sdk(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.fail_before_first_token = [529]

    completion = provider.complete(system=SYSTEM, messages=QUESTION, max_tokens=100)

    assert completion.text == fake.reply
    assert len(fake.requests) == 2
    assert [request.headers["x-stainless-retry-count"] for request in fake.requests] == ["0", "1"]


def test_persistent_500_becomes_upstream_unavailable_after_retries(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.fail_before_first_token = [500, 500, 500, 500]

    with pytest.raises(ApplicationError) as caught:
        provider.complete(system=SYSTEM, messages=QUESTION, max_tokens=100)

    assert (caught.value.code, caught.value.status) == ("upstream_unavailable", 503)
    assert len(fake.requests) == 3


@pytest.mark.asyncio
async def test_rate_limited_stream_without_retries_becomes_upstream_unavailable(fake: FakeAnthropic) -> None:
    fake.fail_before_first_token = [429]
    provider = AnthropicProvider(api_key="k", base_url=fake.base_url, model="claude-test", max_retries=0, timeout=60)

    with pytest.raises(ApplicationError) as caught:
        await collect(provider)

    assert caught.value.code == "upstream_unavailable"
    assert len(fake.requests) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error_type", "code", "status"),
    [
        ("overloaded_error", "upstream_unavailable", 503),
        ("rate_limit_error", "upstream_unavailable", 503),
        ("api_error", "upstream_unavailable", 503),
        ("invalid_request_error", "upstream_error", 502),
    ],
)
async def test_error_event_mid_stream_is_mapped_like_its_http_status_and_keeps_tokens_so_far(
    fake: FakeAnthropic, provider: AnthropicProvider, error_type: str, code: str, status: int
) -> None:
    fake.reply = LONG_REPLY
    fake.error_mid_stream_after = 3
    fake.error_mid_stream_type = error_type
    received: list[str] = []

    with pytest.raises(ApplicationError) as caught:
        async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512) as stream:
            async for text in stream:
                received.append(text)

    assert (caught.value.code, caught.value.status) == (code, status)
    assert received == split_tokens(LONG_REPLY)[:3]
    assert stream.text == "".join(received)
    assert stream.usage.input_tokens == expected_input_tokens()
    assert stream.usage.output_tokens == estimate_tokens(stream.text) > 0
    assert not stream.finished


@pytest.mark.asyncio
async def test_a_malformed_event_mid_stream_raises_upstream_error_and_keeps_tokens_so_far(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.reply = LONG_REPLY
    fake.malformed_event_after = 5
    received: list[str] = []

    with pytest.raises(ApplicationError) as caught:
        async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512) as stream:
            async for text in stream:
                received.append(text)

    assert (caught.value.code, caught.value.status) == ("upstream_error", 502)
    assert received == split_tokens(LONG_REPLY)[:5]
    assert stream.text == "".join(received)
    assert stream.usage.input_tokens == expected_input_tokens()
    assert stream.usage.output_tokens == estimate_tokens(stream.text)
    assert not stream.finished


@pytest.mark.asyncio
async def test_a_stream_cut_before_message_stop_ends_unfinished(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.reply = LONG_REPLY
    fake.cut_stream_after = 4

    deltas, stream = await collect(provider)

    assert deltas == split_tokens(LONG_REPLY)[:4]
    assert not stream.finished and stream.stop_reason is None
    assert stream.usage.output_tokens == estimate_tokens(stream.text)
    assert fake.completed_streams == 0


@pytest.mark.asyncio
async def test_cancelling_the_consumer_closes_the_upstream_connection(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.reply = LONG_REPLY
    fake.token_delay = 0.05
    started = asyncio.Event()
    holder: dict[str, object] = {}

    async def consume() -> None:
        async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512) as stream:
            holder["stream"] = stream
            async for _ in stream:
                started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=5)
    await asyncio.sleep(0.1)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await asyncio.to_thread(fake.wait_for_disconnect, 1.0)
    assert time.monotonic() - cancelled_at < 1.0
    assert fake.disconnects == 1 and fake.completed_streams == 0
    stream = holder["stream"]
    assert stream.usage.output_tokens >= estimate_tokens(stream.text) > 0


@pytest.mark.asyncio
async def test_leaving_the_stream_early_closes_the_upstream_connection(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    fake.reply = LONG_REPLY
    fake.token_delay = 0.05

    async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512) as stream:
        async for _ in stream:
            if len(stream.text.split()) == 2:
                break
        left_at = time.monotonic()

    assert await asyncio.to_thread(fake.wait_for_disconnect, 1.0)
    assert time.monotonic() - left_at < 1.0
    assert fake.completed_streams == 0
    assert stream.usage.output_tokens == estimate_tokens(stream.text)


@pytest.mark.asyncio
async def test_slow_tokens_arrive_one_at_a_time(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.reply = "one two three four five six"
    fake.token_delay = 0.08
    arrivals: list[float] = []

    started = time.monotonic()
    async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512) as stream:
        async for _ in stream:
            arrivals.append(time.monotonic())

    assert len(arrivals) == 6
    assert 5 * 0.08 * 0.8 < arrivals[-1] - arrivals[0] < 5 * 0.08 + 0.3
    # No token arrives before its time, counted from the request. (Not from the first arrival, nor
    # as gaps between arrivals: on a busy machine a client stalled for a moment reads the first
    # token late and the next on time, or the tokens sent meanwhile in one go.)
    for position, arrival in enumerate(arrivals):
        assert arrival - started >= position * 0.08 * 0.8, (position, started, arrivals)


@pytest.mark.asyncio
async def test_first_token_delay_holds_the_first_delta(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    # A delay well above what opening the stream takes on a busy machine (0.26 s once, with the
    # suite's three workers): the stream opens at once, and its first delta comes after the delay.
    fake.first_token_delay = 1.0
    started = time.monotonic()

    async with provider.stream(system=SYSTEM, messages=QUESTION, max_tokens=512) as stream:
        opened = time.monotonic()
        first = await anext(aiter(stream))
        first_at = time.monotonic()

    assert first == split_tokens(fake.reply)[0]
    assert opened - started < 0.75 <= first_at - started


@pytest.mark.asyncio
async def test_hung_upstream_times_out_as_unavailable_and_is_hung_up_on(fake: FakeAnthropic) -> None:
    fake.hang_before_response = 5
    provider = AnthropicProvider(api_key="k", base_url=fake.base_url, model="m", max_retries=0, timeout=0.3)

    with pytest.raises(ApplicationError) as caught:
        await collect(provider)

    assert caught.value.code == "upstream_unavailable"
    assert await asyncio.to_thread(fake.wait_for_disconnect, 1.0)


def test_streams_work_from_successive_event_loops_and_close_with_them(
    fake: FakeAnthropic, provider: AnthropicProvider
) -> None:
    already_open = fake.open_connections
    replies = []
    for _ in range(2):
        deltas, _ = asyncio.run(collect(provider))
        replies.append("".join(deltas))
        assert fake.wait_for_open_connections(at_most=already_open, timeout=2)

    assert replies == [fake.reply, fake.reply]


@pytest.mark.asyncio
async def test_two_hundred_concurrent_streams(fake: FakeAnthropic, provider: AnthropicProvider) -> None:
    fake.reply = " ".join(["tok"] * 10)
    fake.token_delay = 0.02

    results = await asyncio.gather(*(collect(provider) for _ in range(200)))

    assert all("".join(deltas) == fake.reply for deltas, _ in results)
    assert fake.completed_streams == 200
    assert fake.max_active_streams > 100


PASSAGES = [
    "Invoices are issued on the first day of every month.",
    "The refund policy allows returns within thirty days of purchase.",
    "Our office is closed on public holidays.",
]
REFUND_QUESTION = [{"role": "user", "content": "What is the refund policy for returns?"}]


def test_offline_complete_says_it_is_offline_and_quotes_the_best_passage() -> None:
    completion = OfflineProvider().complete(
        system=SYSTEM, messages=REFUND_QUESTION, max_tokens=256, context_passages=PASSAGES
    )

    assert completion.provider == "offline" and completion.model == "offline"
    assert "no language model is configured" in completion.text
    quotes = [line for line in completion.text.splitlines() if line.startswith("> ")]
    assert quotes[0] == f"> {PASSAGES[1]}"
    assert completion.usage.output_tokens == estimate_tokens(completion.text)
    assert completion.usage.input_tokens > 0


@pytest.mark.asyncio
async def test_offline_stream_yields_the_same_answer_word_by_word() -> None:
    provider = OfflineProvider()
    completion = provider.complete(system=SYSTEM, messages=REFUND_QUESTION, max_tokens=256, context_passages=PASSAGES)

    async with provider.stream(
        system=SYSTEM, messages=REFUND_QUESTION, max_tokens=256, context_passages=PASSAGES
    ) as stream:
        deltas = [text async for text in stream]

    assert len(deltas) > 10
    assert "".join(deltas) == stream.text == completion.text
    assert stream.usage == completion.usage
    assert stream.finished


def test_offline_answer_keeps_within_max_tokens_but_keeps_the_notice() -> None:
    passages = [" ".join(["refund policy details"] * 200)]

    completion = OfflineProvider().complete(
        system=SYSTEM, messages=REFUND_QUESTION, max_tokens=60, context_passages=passages
    )

    assert completion.text.startswith("Offline answer: no language model is configured")
    assert completion.usage.output_tokens <= 60


def test_offline_answer_without_passages_says_so() -> None:
    completion = OfflineProvider().complete(system="", messages=REFUND_QUESTION, max_tokens=256)

    assert "no passages" in completion.text


def test_provider_follows_the_api_key_and_is_cached_per_configuration(fake: FakeAnthropic) -> None:
    with_key = ProviderConfig(api_key="k", base_url=fake.base_url, model="m", max_retries=1, timeout=5.0)
    without_key = with_key._replace(api_key="")

    assert isinstance(provider_for(with_key), AnthropicProvider)
    assert provider_for(with_key) is provider_for(with_key)
    assert isinstance(provider_for(without_key), OfflineProvider)
