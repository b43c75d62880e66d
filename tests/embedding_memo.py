"""The suite's embedding memo: the local model's vector of a text the test process already embedded.

Like the test password hasher (tests/hashers.py) it changes what the suite spends, never what it
gets: the vectors are the model's own, computed once per text. Tests create the same handbooks and
questions again and again (in one browser run, 557 texts embedded were 161 distinct ones), and the
model's CPU was a quarter of a browser test's. Tests of the runtime itself load the model directly
(ai.embedding.onnx), which the memo does not touch; processes the tests start embed for real.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from django.conf import settings

from ai.embedding.embedders import LocalEmbedder

# About 1.5 KB a vector: the memo stays under 30 MB.
LIMIT = 20_000

# By (the questions' int8 graph or not, text): a question's vector is not a document's.
_vectors: OrderedDict[tuple[bool, str], np.ndarray] = OrderedDict()
_lock = threading.Lock()
_off = threading.Event()  # set while a test of the embedders themselves runs


@contextmanager
def bypassed() -> Iterator[None]:
    """Every text embedded by the model in the block (tests of the embedders: threads, batching)."""
    _off.set()
    try:
        yield
    finally:
        _off.clear()


def _remembered(graph: bool, texts: list[str]) -> dict[str, np.ndarray]:
    with _lock:
        found = {}
        for text in texts:
            vector = _vectors.get((graph, text))
            if vector is not None:
                _vectors.move_to_end((graph, text))
                found[text] = vector
        return found


def _remember(graph: bool, texts: list[str], vectors: list[list[float]]) -> None:
    with _lock:
        for text, vector in zip(texts, vectors, strict=True):
            _vectors[(graph, text)] = np.asarray(vector, dtype=np.float32)
        while len(_vectors) > LIMIT:
            _vectors.popitem(last=False)


def install() -> None:
    encode = LocalEmbedder._encode

    def memoised(self: LocalEmbedder, texts: list[str], *, threads: int | None = None, questions: bool = False) -> Any:
        if _off.is_set():
            return encode(self, texts, threads=threads, questions=questions)
        graph = questions and settings.EMBEDDING_QUERY_INT8
        known = _remembered(graph, texts)
        missing = [text for text in dict.fromkeys(texts) if text not in known]
        if missing:
            computed = encode(self, missing, threads=threads, questions=questions)
            _remember(graph, missing, computed)
            known.update(zip(missing, (np.asarray(v, dtype=np.float32) for v in computed), strict=True))
        return [known[text].tolist() for text in texts]

    LocalEmbedder._encode = memoised  # type: ignore[method-assign]
