"""Claude through the official Anthropic SDK: completions, and streams whose usage comes from the
stream's own events."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Self, cast

import anthropic

from ai.llm.types import Completion, LLMStream, Usage
from core.platform.exceptions import ApplicationError

if TYPE_CHECKING:
    from anthropic import AsyncStream
    from anthropic.types import MessageParam, RawMessageStreamEvent

logger = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "The language model is temporarily unavailable. Please try again shortly."
UPSTREAM_ERROR_MESSAGE = "The language model failed to answer this request."


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


# The HTTP status the Messages API answers each error type with: a mid-stream `error` event arrives
# under the stream's own 200, so its type says what the status would have.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def upstream_error(exc: BaseException) -> ApplicationError:
    """Map an SDK or transport failure to the error a Strata client sees."""
    if isinstance(exc, anthropic.APIStatusError):
        logger.warning(
            "Anthropic API error: status=%s type=%s request_id=%s", exc.status_code, exc.type, exc.request_id
        )
        status = exc.status_code if exc.status_code >= 400 else ERROR_TYPE_STATUS.get(exc.type or "", 500)
        if status == 429 or status >= 500:
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
    """Text deltas from ``AsyncAnthropic.messages.create(stream=True)``, with usage read from the
    stream's own events. The raw event stream, not the SDK's ``messages.stream()`` helper: that one
    rebuilds a snapshot of the whole message on every event, which nothing here reads."""

    provider = "anthropic"

    def __init__(
        self, *, model: str, client: Callable[[], Awaitable[anthropic.AsyncAnthropic]], request: dict[str, Any]
    ) -> None:
        super().__init__(model=model)
        self._client = client
        self._request = request
        self._stream: AsyncStream[RawMessageStreamEvent] | None = None
        self.request_id: str | None = None

    async def __aenter__(self) -> Self:
        client = await self._client()
        try:
            self._stream = await client.messages.create(**self._request, stream=True)
        except (anthropic.APIError, *TRANSPORT_ERRORS) as exc:
            raise upstream_error(exc) from exc
        self.request_id = self._stream.response.headers.get("request-id")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Closing the response is what tells the upstream to stop generating (and billing).
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.close()

    async def __anext__(self) -> str:
        if self._stream is None:
            raise StopAsyncIteration
        while True:
            try:
                event = await self._stream.__anext__()
            except StopAsyncIteration:
                raise
            except Exception as exc:
                # Whatever broke the stream (an API error, a transport error, an event that is not
                # JSON), the client gets an upstream error and the text and usage so far are kept.
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
        model: str,
        base_url: str | None,
        max_retries: int,
        timeout: float,
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
            client = anthropic.AsyncAnthropic(**self._client_options, http_client=anthropic.DefaultAioHttpClient())
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
