"""What every language-model provider speaks: token usage, completions, and the stream protocol."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Protocol, Self


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
        # Until the upstream reports its own output count, estimate it from the text so far: never
        # less than the text deltas received, since each carries at least one token.
        self._output_reported = False
        self._output_floor = 0
        self._deltas = 0

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
        self._deltas += 1
        if not self._output_reported:
            self.usage.output_tokens = max(self._output_floor, self._deltas, estimate_tokens(self.text))
