"""The question-embedding batcher: questions that arrive together share a model call; a lone one never waits."""

import os
import threading
import time

import numpy as np
import pytest

from ai.embedding import embedders
from ai.embedding.batching import BatcherOverloaded, QueryBatcher
from ai.embedding.embedders import LocalEmbedder, query_embedding

# Tests of the embedders: the model runs for every text (no memo, tests/embedding_memo.py).
pytestmark = pytest.mark.real_embeddings


class RecordingModel:
    """Stands in for the model: records each batch; can be held to let questions pile up."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def __call__(self, texts: list[str]) -> list[list[float]]:
        self.entered.set()
        self.hold.wait(5)
        self.batches.append(list(texts))
        return [[float(len(text)), 1.0] for text in texts]


def test_a_lone_question_is_embedded_at_once_without_waiting_for_company():
    model = RecordingModel()
    batcher = QueryBatcher(model, max_batch_size=16, max_wait_ms=500)
    started = time.monotonic()
    assert batcher.submit("alone").result(5) == [5.0, 1.0]
    assert time.monotonic() - started < 0.25


def test_questions_that_arrive_together_share_one_call_up_to_the_maximum():
    model = RecordingModel()
    batcher = QueryBatcher(model, max_batch_size=8, max_wait_ms=50)
    model.hold.clear()
    first = batcher.submit("first")
    assert model.entered.wait(5)  # the worker is busy with the first question
    futures = [batcher.submit(f"question {i}") for i in range(20)]
    model.hold.set()

    results = [future.result(5) for future in [first, *futures]]

    assert results[1] == [float(len("question 0")), 1.0]
    assert [len(batch) for batch in model.batches] == [1, 8, 8, 4]
    assert [text for batch in model.batches for text in batch] == ["first"] + [f"question {i}" for i in range(20)]
    assert batcher.stats.largest == 8


def test_a_failing_batch_fails_each_of_its_questions_and_the_next_batch_works():
    calls = []

    def flaky(texts):
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return [[1.0] for _ in texts]

    batcher = QueryBatcher(flaky, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.submit("one").result(5)
    assert batcher.submit("two").result(5) == [1.0]


def test_too_many_waiting_questions_are_refused_at_once():
    model = RecordingModel()
    model.hold.clear()
    batcher = QueryBatcher(model, max_batch_size=1, max_pending=2)
    batcher.submit("busy")
    assert model.entered.wait(5)
    batcher.submit("one")
    batcher.submit("two")
    with pytest.raises(BatcherOverloaded):
        batcher.submit("three")
    model.hold.set()


def test_a_question_whose_asker_went_away_is_skipped():
    model = RecordingModel()
    model.hold.clear()
    batcher = QueryBatcher(model, max_batch_size=4, max_wait_ms=0)
    batcher.submit("busy")
    assert model.entered.wait(5)
    gone = batcher.submit("gone")
    kept = batcher.submit("kept")
    gone.cancel()
    model.hold.set()
    assert kept.result(5) == [4.0, 1.0]
    assert ["gone"] not in model.batches and all("gone" not in batch for batch in model.batches)


def test_a_question_embedded_in_a_batch_matches_its_embedding_alone(settings):
    settings.EMBEDDING_QUERY_BATCH_MAX = 16
    embedder = LocalEmbedder()
    questions = [f"What does clause {i} of the supplier contract say about late delivery?" for i in range(12)]
    alone = np.array([embedder.embed_query(question) for question in questions])

    together = np.array([future.result(30) for future in [query_embedding(question) for question in questions]])

    cosines = (alone * together).sum(axis=1) / (np.linalg.norm(alone, axis=1) * np.linalg.norm(together, axis=1))
    assert cosines.min() > 0.99999


def test_with_batching_off_each_question_is_its_own_call(settings):
    settings.EMBEDDING_QUERY_BATCH_MAX = 1
    embedder = LocalEmbedder()
    vector = query_embedding("Where is the warehouse?").result(30)
    assert np.allclose(vector, embedder.embed_query("Where is the warehouse?"), atol=1e-6)


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


class NicenessEmbedder:
    """Stands in for an embedder: each question's "vector" is the niceness of the thread embedding it."""

    def embed_query(self, text: str) -> list[float]:
        return [float(_niceness())]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]


@pytest.mark.parametrize("batch_max", [16, 1])
def test_questions_are_embedded_below_the_priority_of_serving(settings, monkeypatch, batch_max):
    """The thread computing a question's vector runs EMBEDDING_QUERY_NICENESS steps nicer than the
    threads serving (the turn's database step, the event loop), batched or not; the asker's own
    thread is untouched."""
    settings.EMBEDDING_QUERY_NICENESS = 7
    settings.EMBEDDING_QUERY_BATCH_MAX = batch_max
    monkeypatch.setattr(embedders, "get_embedder", NicenessEmbedder)
    monkeypatch.setattr(embedders, "_query_batchers", {})  # a worker thread started afresh, under these settings
    embedders._query_threads.cache_clear()
    try:
        serving = _niceness()
        assert query_embedding("Who signs off refunds?").result(10) == [float(serving + 7)]
        assert _niceness() == serving
    finally:
        embedders._query_threads.cache_clear()
