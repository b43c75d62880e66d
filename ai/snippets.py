"""Search snippets: the sentences of a passage nearest a query in meaning, as plain text (no Markdown)."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import nh3
import numpy as np
from markdown_it import MarkdownIt

SNIPPET_MAX_CHARS = 320
# Sentences embedded for one results page at most (about a tenth of a second on the local model).
SNIPPET_MAX_SENTENCES = 240

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[\"'(“‘\[]?[A-Z0-9À-Ý])")


@dataclass(frozen=True)
class Snippet:
    """A passage shortened around its best sentence: ``before`` and ``after`` are the neighbours
    that fit, with an ellipsis where the passage goes on."""

    before: str
    match: str
    after: str

    @property
    def text(self) -> str:
        return f"{self.before}{self.match}{self.after}"


@functools.cache
def _markdown() -> MarkdownIt:
    markdown = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")
    markdown.add_render_rule("softbreak", lambda *args: " ")  # a line break inside a paragraph is a space
    return markdown


def plain_text(text: str) -> str:
    """Passage text as a reader sees it: Markdown rendered and its marks dropped, one block a line."""
    rendered = nh3.clean(_markdown().render(text), tags=set())
    lines = (" ".join(line.split()) for line in html.unescape(rendered).splitlines())
    return "\n".join(line for line in lines if line)


def sentences(text: str) -> list[str]:
    return [s for line in plain_text(text).splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def snippets_nearest(
    *, query_vector: Sequence[float], passages: Sequence[str], embed: Callable[[list[str]], list[list[float]]]
) -> list[Snippet]:
    """One snippet a passage: its sentence nearest ``query_vector`` with as many neighbours as fit
    in SNIPPET_MAX_CHARS. ``embed`` embeds a list of texts (one batch for all passages)."""
    split = [sentences(passage) or [" ".join(passage.split())] for passage in passages]
    flat = [sentence for group in split for sentence in group][:SNIPPET_MAX_SENTENCES]
    scores: list[float] = []
    if len(flat) > len(split):  # some passage has a choice to make
        vectors = np.asarray(embed(flat), dtype=np.float32)
        query = np.asarray(query_vector, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = (vectors @ query / np.where(norms == 0, 1.0, norms)).tolist()
    result, offset = [], 0
    for group in split:
        group_scores = scores[offset : offset + len(group)]
        offset += len(group)
        best = max(range(len(group_scores)), key=group_scores.__getitem__) if len(group_scores) == len(group) else 0
        result.append(_around(group, best))
    return result


def _around(group: list[str], best: int) -> Snippet:
    match = group[best]
    if len(match) > SNIPPET_MAX_CHARS:
        cut = match[: SNIPPET_MAX_CHARS - 1].rsplit(" ", 1)[0]
        return Snippet(before="…" if best > 0 else "", match=f"{cut}…", after="")
    first, last, size = best, best, len(match)
    while True:  # the following sentence first: it usually finishes the thought
        if last + 1 < len(group) and size + 1 + len(group[last + 1]) <= SNIPPET_MAX_CHARS:
            last += 1
            size += 1 + len(group[last])
        elif first > 0 and size + 1 + len(group[first - 1]) <= SNIPPET_MAX_CHARS:
            first -= 1
            size += 1 + len(group[first])
        else:
            break
    before = " ".join(group[first:best])
    after = " ".join(group[best + 1 : last + 1])
    return Snippet(
        before=("… " if first > 0 else "") + (f"{before} " if before else ""),
        match=match,
        after=(f" {after}" if after else "") + (" …" if last + 1 < len(group) else ""),
    )
