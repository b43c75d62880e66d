"""Inline citations: an answer's [1], [2] markers (the numbers of the passages its prompt gave the
model) turned into links to those passages, in the answer's sanitised HTML."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

_TAG = re.compile(r"(<[^>]*>)")
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
# Text inside these is left as it is: a link already, or code that may well say list[1].
_SKIPPED = {"a", "code", "pre"}


def citations_passages(sources: Sequence[dict[str, Any]] | None) -> dict[int, tuple[dict[str, Any], int]]:
    """Marker number -> (its source, its passage's chunk id), from the sources of an answer."""
    passages: dict[int, tuple[dict[str, Any], int]] = {}
    for source in sources or []:
        for number, chunk_id in zip(source.get("citations") or [], source.get("chunk_ids") or [], strict=False):
            passages[int(number)] = (source, int(chunk_id))
    return passages


def citations_link(answer_html: str, sources: Sequence[dict[str, Any]] | None) -> str:
    """``answer_html`` (already sanitised, ai.markdown) with each marker of a known passage made a
    link to it: its document's page, scrolled to the passage. Unknown numbers stay text."""
    passages = citations_passages(sources)
    if not passages or "[" not in answer_html:
        return answer_html
    parts = _TAG.split(answer_html)
    skipped = 0
    for index, part in enumerate(parts):
        if part.startswith("<"):
            name = part.strip("</>").split()[0].lower() if part.strip("</>") else ""
            if name in _SKIPPED:
                skipped += -1 if part.startswith("</") else 1
        elif skipped <= 0 and "[" in part:
            parts[index] = _MARKER.sub(lambda match: _linked(match, passages), part)
    return "".join(parts)


def _linked(match: re.Match[str], passages: dict[int, tuple[dict[str, Any], int]]) -> str:
    numbers = [int(number) for number in re.split(r"\s*,\s*", match.group(1))]
    if not all(number in passages for number in numbers):
        return match.group(0)
    if len(numbers) == 1:
        return _link(numbers[0], passages, f"[{numbers[0]}]")
    return "[" + ", ".join(_link(number, passages, str(number)) for number in numbers) + "]"


def _link(number: int, passages: dict[int, tuple[dict[str, Any], int]], text: str) -> str:
    source, chunk_id = passages[number]
    href = f"/documents/{int(source['document_id'])}/?passage={chunk_id}#highlight"
    title = html.escape(str(source.get("title", "")), quote=True)
    return f'<a class="cite" href="{href}" title="{title}">{text}</a>'
