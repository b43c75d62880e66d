"""Questions on ONNX Runtime give the PyTorch model's vectors; bulk embedding picks what is fastest here."""

import contextlib
import time

import numpy as np

from ai.embedding.bulk import BulkConfig, BulkPlan
from ai.embedding.embedders import WEIGHTS_SHA256, LocalEmbedder, bulk_embedding, model_folder
from ai.embedding.onnx import onnx_model_load

QUESTIONS = [
    "How long do customers have to ask for a refund?",
    "refund",
    "Which supplier in zone 3 caused most of the delays in week 7, and what did the regional leads decide to do?",
    "Wer ist für die Sicherheit im Büro zuständig?",
    "¿Cuándo se publica el informe trimestral de finanzas?",
    "Q3 numbers",
    "What is the hiring plan for the warehouse team next quarter? " * 8,
    " ".join(f"clause{i} of the supplier contract" for i in range(120)),  # past the 256 word pieces kept
]


def cosines(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_questions_on_onnx_runtime_get_the_vectors_of_the_pytorch_model(settings):
    settings.EMBEDDING_QUERY_RUNTIME = "onnx"
    embedder = LocalEmbedder()
    assert embedder._onnx_model() is not None

    on_onnx = embedder.embed_queries(QUESTIONS)
    on_torch = embedder._encode(QUESTIONS)

    assert cosines(on_onnx, on_torch).min() > 0.99999
    assert np.allclose(np.linalg.norm(on_onnx, axis=1), 1.0, atol=1e-5)
    # One question alone, or among others of other lengths, gets the same vector.
    assert cosines([embedder.embed_query(QUESTIONS[2])], [on_onnx[2]]).min() > 0.99999


def test_a_corrupt_onnx_file_is_exported_again_and_never_served(tmp_path):
    embedder = LocalEmbedder()
    first = onnx_model_load(
        folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256, reference=embedder._encode
    )
    (path,) = tmp_path.glob("*.onnx")
    path.write_bytes(b"not a model")

    again = onnx_model_load(
        folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256, reference=embedder._encode
    )

    assert path.stat().st_size > 1_000_000
    assert cosines(again.embed(QUESTIONS[:2]), first.embed(QUESTIONS[:2])).min() > 0.99999


def test_bulk_embedding_settles_on_the_fastest_configuration_never_slower_than_one_text_per_call():
    naive = BulkConfig(1, 1)
    slow_batches = BulkConfig(1, 32)
    fast_batches = BulkConfig(2, 8)
    seconds_per_text = {naive: 0.002, slow_batches: 0.004, fast_batches: 0.0005}
    active = []

    @contextlib.contextmanager
    def apply(config):
        active.append(config)
        yield

    def embed(batch):
        time.sleep(seconds_per_text[active[-1]] * len(batch))
        return [[float(len(text))] for text in batch]

    plan = BulkPlan([naive, slow_batches, fast_batches], apply=apply, count_tokens=lambda text: 10)
    texts = [f"chunk {i:03d}" for i in range(300)]

    vectors = plan.embed_documents(texts, embed)

    assert vectors == [[float(len(text))] for text in texts]
    assert plan.best == fast_batches
    assert active.count(fast_batches) > 0.8 * len(active)


def test_bulk_mode_on_this_cpu_gives_the_vectors_of_the_serving_path():
    embedder = LocalEmbedder()
    texts = [f"In week {i} the warehouse team reviewed {3 * i} open items with the regional leads." for i in range(40)]
    plain = embedder.embed_documents(texts)
    with bulk_embedding():
        bulk = embedder.embed_documents(texts)
    assert cosines(plain, bulk).min() > 0.9999
