"""The offline provider: no language model configured, so it quotes the best passages and says so."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from ai.llm.types import Completion, LLMStream, Usage, estimate_tokens

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
