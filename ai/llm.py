"""LLM providers: Claude through the Anthropic SDK, and an offline fallback that quotes the given passages."""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import re
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, cast

import anthropic

from core.exceptions import ApplicationError

if TYPE_CHECKING:
    from anthropic.lib.streaming import AsyncMessageStream, AsyncMessageStreamManager
    from anthropic.types import MessageParam

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_MAX_RETRIES = 2
DEFAULT_TIMEOUT = 120.0
OFFLINE_MODEL = "offline"
OFFLINE_NOTICE = (
    "Offline answer: no language model is configured for Strata, so this is not a generated reply. "
    "These are the passages from your documents that match your request best:"
)
OFFLINE_NO_PASSAGES = (
    "Offline answer: no language model is configured for Strata, and there were no passages "
    "from your documents to quote for this request."
)
OFFLINE_QUOTED_PASSAGES = 2
OFFLINE_QUOTE_CHARS = 600
UNAVAILABLE_MESSAGE = "The language model is temporarily unavailable. Please try again shortly."
UPSTREAM_ERROR_MESSAGE = "The language model failed to answer this request."


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) that is never zero for non-empty text."""
    return (len(text) + 3) // 4


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total(self) -> int:
        """Every token billed for the call: input, output and both kinds of cache input."""
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: Usage) -> None:
        """Add another call's counts to these (a map-reduce summary's total, say)."""
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class Completion:
    text: str
    usage: Usage
    model: str
    provider: str


class LLMProvider(Protocol):
    """What the summarise and chat services need from a language model."""

    name: str
    model: str

    def complete(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        context_passages: list[str] | None = None,
    ) -> Completion: ...

    def stream(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        context_passages: list[str] | None = None,
    ) -> LLMStream: ...


class LLMStream:
    """An answer arriving as text deltas: ``async with provider.stream(...) as s: async for text in s``.

    ``text`` and ``usage`` are current at every step, and stay readable after the
    stream ends, fails or is cancelled, so the tokens spent can always be recorded.
    """

    provider: str = ""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.text = ""
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.finished = False
        # Until the upstream reports its own output count, estimate it from the text so far.
        self._output_reported = False
        self._output_floor = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        raise StopAsyncIteration

    def _add_text(self, delta: str) -> None:
        self.text += delta
        if not self._output_reported:
            self.usage.output_tokens = max(self._output_floor, estimate_tokens(self.text))


# Anthropic


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP library's transport errors, which the SDK lets through while a stream is read."""
    errors: list[type[BaseException]] = []
    for module_name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module_name).TransportError)
        except ImportError:
            continue
    return tuple(errors)


TRANSPORT_ERRORS = _transport_errors()


def upstream_error(exc: BaseException) -> ApplicationError:
    """Map an SDK or transport failure to the error a Strata client sees."""
    if isinstance(exc, anthropic.APIStatusError):
        logger.warning(
            "Anthropic API error: status=%s type=%s request_id=%s", exc.status_code, exc.type, exc.request_id
        )
        # Mid-stream `error` events arrive with the stream's own 200 status, so they land on upstream_error.
        if exc.status_code == 429 or exc.status_code >= 500:
            return ApplicationError(UNAVAILABLE_MESSAGE, code="upstream_unavailable", status=503)
        return ApplicationError(UPSTREAM_ERROR_MESSAGE, code="upstream_error", status=502)
    if isinstance(exc, anthropic.APIConnectionError):
        logger.warning("Anthropic API unreachable: %s", exc)
        return ApplicationError(UNAVAILABLE_MESSAGE, code="upstream_unavailable", status=503)
    logger.warning("Anthropic stream broke off: %r", exc)
    return ApplicationError(UPSTREAM_ERROR_MESSAGE, code="upstream_error", status=502)


USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _usage_from_sdk(usage: Any) -> Usage:
    return Usage(**{name: getattr(usage, name, None) or 0 for name in USAGE_FIELDS})


def _update_usage(target: Usage, reported: Any) -> None:
    """Copy the counts the upstream reported; it leaves out (None) the ones that did not change."""
    for name in USAGE_FIELDS:
        value = getattr(reported, name, None)
        if value is not None:
            setattr(target, name, value)


class AnthropicStream(LLMStream):
    """Text deltas from ``AsyncAnthropic.messages.stream``, with usage read from the stream's own events."""

    provider = "anthropic"

    def __init__(
        self, *, model: str, client: Callable[[], Awaitable[anthropic.AsyncAnthropic]], request: dict[str, Any]
    ) -> None:
        super().__init__(model=model)
        self._client = client
        self._request = request
        self._manager: AsyncMessageStreamManager[None] | None = None
        self._stream: AsyncMessageStream[None] | None = None
        self.request_id: str | None = None

    async def __aenter__(self) -> Self:
        client = await self._client()
        manager: AsyncMessageStreamManager[None] = client.messages.stream(**self._request)
        try:
            self._stream = await manager.__aenter__()
        except (anthropic.APIError, *TRANSPORT_ERRORS) as exc:
            raise upstream_error(exc) from exc
        self._manager = manager
        self.request_id = self._stream.request_id
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Closing the response is what tells the upstream to stop generating (and billing).
        if self._manager is not None:
            manager, self._manager, self._stream = self._manager, None, None
            await manager.__aexit__(exc_type, exc, traceback)

    async def __anext__(self) -> str:
        if self._stream is None:
            raise StopAsyncIteration
        while True:
            try:
                event = await self._stream.__anext__()
            except (anthropic.APIError, *TRANSPORT_ERRORS) as exc:
                raise upstream_error(exc) from exc
            delta = self._observe(event)
            if delta:
                return delta

    def _observe(self, event: Any) -> str:
        """Fold one SDK event into text and usage; return its text delta, if any."""
        if event.type == "message_start":
            _update_usage(self.usage, event.message.usage)
            self._output_floor = self.usage.output_tokens
            self.model = event.message.model or self.model
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            self._add_text(event.delta.text)
            return cast(str, event.delta.text)
        elif event.type == "message_delta":
            self._apply_final_usage(event.usage)
            self.stop_reason = event.delta.stop_reason
        elif event.type == "message_stop":
            self.finished = True
        return ""

    def _apply_final_usage(self, usage: Any) -> None:
        # message_delta counts are cumulative totals, so they replace the estimate rather than add to it.
        self._output_reported = True
        _update_usage(self.usage, usage)


class _LoopClient(NamedTuple):
    client: anthropic.AsyncAnthropic
    closer: AsyncGenerator[None, None]


class AnthropicProvider:
    """Claude through the official SDK; retries follow the SDK's own policy (``max_retries``)."""

    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.model = model
        self._client_options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "max_retries": max_retries,
            "timeout": timeout,
        }
        self._client = anthropic.Anthropic(**self._client_options)
        # An async client's connections belong to the event loop that opened them, so each loop gets its own.
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._async_clients_lock = threading.Lock()

    def complete(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        context_passages: list[str] | None = None,
    ) -> Completion:
        try:
            message = self._client.messages.create(**self._request(system, messages, max_tokens))
        except anthropic.APIError as exc:
            raise upstream_error(exc) from exc
        text = "".join(block.text for block in message.content if block.type == "text")
        return Completion(text=text, usage=_usage_from_sdk(message.usage), model=message.model, provider=self.name)

    def stream(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        context_passages: list[str] | None = None,
    ) -> AnthropicStream:
        request = self._request(system, messages, max_tokens)
        return AnthropicStream(model=self.model, client=self._async_client, request=request)

    async def _async_client(self) -> anthropic.AsyncAnthropic:
        """The async client of the running loop, created on first use and closed when that loop shuts down."""
        loop = asyncio.get_running_loop()
        with self._async_clients_lock:
            entry = self._async_clients.get(loop)
            if entry is not None:
                return entry.client
            client = anthropic.AsyncAnthropic(**self._client_options)
            closer = self._close_with_loop(loop, client)
            self._async_clients[loop] = _LoopClient(client, closer)
        # Starting the generator registers it with the loop, whose shutdown_asyncgens() (asyncio.run,
        # asyncio.Runner, asgiref) then closes it: the client's connections close on their own loop.
        await anext(closer)
        return client

    async def _close_with_loop(
        self, loop: asyncio.AbstractEventLoop, client: anthropic.AsyncAnthropic
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            with self._async_clients_lock:
                self._async_clients.pop(loop, None)
            await client.close()

    def _request(self, system: str, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": cast("list[MessageParam]", messages),
        }
        if system:
            request["system"] = system
        return request


# Offline


_WORD = re.compile(r"\w+")
_PIECE = re.compile(r"\s*\S+\s*")


def _words(text: str) -> set[str]:
    # Words of one or two letters ("a", "of", "is") match everything and rank nothing.
    return {word for word in _WORD.findall(text.lower()) if len(word) > 2}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(block.get("text", "") for block in content if isinstance(block, dict))
    return ""


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


def rank_passages(question: str, passages: list[str], *, limit: int) -> list[str]:
    """The passages sharing most words with the question; retrieval order breaks ties and fills in."""
    question_words = _words(question)
    candidates = [(index, passage) for index, passage in enumerate(passages) if passage.strip()]
    ranked = sorted(candidates, key=lambda item: (-len(question_words & _words(item[1])), item[0]))
    return [passage for _, passage in ranked[:limit]]


def _clip(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    # Two characters go to the " …" that marks the cut.
    return text[: max_chars - 2].rsplit(" ", 1)[0] + " …"


def _quote(passage: str) -> str:
    return f"> {_clip(' '.join(passage.split()), OFFLINE_QUOTE_CHARS)}"


def offline_answer(messages: list[dict[str, Any]], context_passages: list[str] | None, *, max_tokens: int) -> str:
    """The offline reply: a plain notice, then the best passages quoted, kept within ``max_tokens``."""
    passages = rank_passages(_last_user_text(messages), context_passages or [], limit=OFFLINE_QUOTED_PASSAGES)
    if not passages:
        return OFFLINE_NO_PASSAGES
    answer = "\n\n".join([OFFLINE_NOTICE, *(_quote(passage) for passage in passages)])
    # Keep the notice even under a tiny budget: the reader must know this is not a model's answer.
    return _clip(answer, max(max_tokens * 4, len(OFFLINE_NOTICE)))


def _prompt_text(system: str, messages: list[dict[str, Any]]) -> str:
    return "\n".join([system, *(_content_text(message.get("content")) for message in messages)])


class OfflineStream(LLMStream):
    """Streams a ready-made offline answer word by word, yielding to the loop between words."""

    provider = "offline"

    def __init__(self, *, answer: str, input_tokens: int) -> None:
        super().__init__(model=OFFLINE_MODEL)
        self.usage.input_tokens = input_tokens
        self._pieces = iter(_PIECE.findall(answer) or [answer])

    async def __anext__(self) -> str:
        # Give the loop a turn, so a consumer can be cancelled between words as with a real stream.
        await asyncio.sleep(0)
        piece = next(self._pieces, None)
        if piece is None:
            self.finished = True
            self.stop_reason = "end_turn"
            raise StopAsyncIteration
        self._add_text(piece)
        return piece


class OfflineProvider:
    """Answers without a language model by quoting the passages it is given, and says so."""

    name = "offline"
    model = OFFLINE_MODEL

    def complete(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        context_passages: list[str] | None = None,
    ) -> Completion:
        text = offline_answer(messages, context_passages, max_tokens=max_tokens)
        usage = Usage(input_tokens=estimate_tokens(_prompt_text(system, messages)), output_tokens=estimate_tokens(text))
        return Completion(text=text, usage=usage, model=self.model, provider=self.name)

    def stream(
        self,
        *,
        system: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        context_passages: list[str] | None = None,
    ) -> OfflineStream:
        answer = offline_answer(messages, context_passages, max_tokens=max_tokens)
        return OfflineStream(answer=answer, input_tokens=estimate_tokens(_prompt_text(system, messages)))


# Factory


class ProviderConfig(NamedTuple):
    api_key: str
    base_url: str | None
    model: str
    max_retries: int
    timeout: float


def get_llm_provider() -> LLMProvider:
    """The provider the settings ask for: Anthropic when a key is set, offline otherwise."""
    from django.conf import settings

    config = ProviderConfig(
        api_key=getattr(settings, "ANTHROPIC_API_KEY", "") or "",
        base_url=getattr(settings, "ANTHROPIC_BASE_URL", None) or None,
        model=getattr(settings, "ANTHROPIC_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL,
        max_retries=int(getattr(settings, "ANTHROPIC_MAX_RETRIES", DEFAULT_MAX_RETRIES)),
        timeout=float(getattr(settings, "ANTHROPIC_TIMEOUT", DEFAULT_TIMEOUT)),
    )
    return provider_for(config)


@functools.lru_cache(maxsize=8)
def provider_for(config: ProviderConfig) -> LLMProvider:
    """One provider (and so one set of HTTP clients) per distinct configuration."""
    if not config.api_key:
        return OfflineProvider()
    return AnthropicProvider(
        api_key=config.api_key,
        base_url=config.base_url,
        model=config.model,
        max_retries=config.max_retries,
        timeout=config.timeout,
    )
