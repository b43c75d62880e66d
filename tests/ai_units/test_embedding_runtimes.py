"""One runtime, ONNX Runtime, for questions and bulk embedding: the PyTorch reference's vectors
without torch, a graph built from the checked weights (and the questions' int8 graph quantized from
it), and bulk batches that pick what is fastest here."""

import json
import os
import subprocess
import sys
import time

import numpy as np

from ai.embedding.bulk import BulkConfig, BulkPlan
from ai.embedding.embedders import WEIGHTS_SHA256, LocalEmbedder, bulk_embedding, model_folder
from ai.embedding.onnx import onnx_model_load, query_model_load, reference_vectors

QUESTIONS = [
    "How long do customers have to ask for a refund?",
    "refund",
    "Which supplier in zone 3 caused most of the delays in week 7, and what did the regional leads decide to do?",
    "Wer ist für die Sicherheit im Büro zuständig?",
    "¿Cuándo se publica el informe trimestral de finanzas?",
    "Q3",
    "What is the hiring plan for the warehouse team next quarter? " * 8,
    " ".join(f"clause{i} of the supplier contract" for i in range(120)),  # past the 256 word pieces kept
]


def cosines(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_questions_and_documents_get_the_vectors_of_the_pytorch_reference(settings):
    settings.EMBEDDING_QUERY_INT8 = False  # questions by the float graph too: the reference's vectors
    texts, expected = reference_vectors(WEIGHTS_SHA256)
    embedder = LocalEmbedder()

    as_questions = embedder.embed_queries(texts)
    as_documents = LocalEmbedder(batch_size=3).embed_documents(texts)
    with bulk_embedding():
        in_bulk = embedder.embed_documents(texts)

    assert set(QUESTIONS) <= set(texts)
    for vectors in (as_questions, as_documents, in_bulk):
        assert cosines(vectors, expected).min() > 0.99999
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # One question alone, or among others of other lengths, gets the same vector.
    assert cosines([embedder.embed_query(QUESTIONS[2])], [as_questions[texts.index(QUESTIONS[2])]]).min() > 0.99999


def test_questions_get_the_int8_graphs_vectors_near_the_references_and_documents_the_references(settings):
    assert settings.EMBEDDING_QUERY_INT8  # the default
    texts, expected = reference_vectors(WEIGHTS_SHA256)
    embedder = LocalEmbedder()

    as_questions = embedder.embed_queries(texts)
    as_documents = embedder.embed_documents(texts)

    assert cosines(as_documents, expected).min() > 0.99999  # nothing stored changes
    near = cosines(as_questions, expected)
    assert 0.97 <= near.min() and near.max() < 0.99999  # the int8 graph, not the float one
    assert np.allclose(np.linalg.norm(as_questions, axis=1), 1.0, atol=1e-5)
    short = [question for question in QUESTIONS if len(question) < 200]
    assert cosines(embedder.embed_queries(short), embedder.embed_documents(short)).min() > 0.98
    # One question alone, or among others of other lengths, gets the same vector.
    assert cosines([embedder.embed_query(QUESTIONS[2])], [as_questions[texts.index(QUESTIONS[2])]]).min() > 0.99999


def test_the_model_is_built_and_served_with_no_pytorch_installed(tmp_path):
    # A fresh process where torch, transformers and sentence-transformers cannot be imported, as in
    # the default install: it builds the graph from the weights, checks it, and embeds both ways.
    probe = """
import json, sys
for name in ("torch", "transformers", "sentence_transformers"):
    sys.modules[name] = None
import django
django.setup()
from ai.embedding.embedders import LocalEmbedder, bulk_embedding
embedder = LocalEmbedder()
question = embedder.embed_query("How long do customers have to ask for a refund?")
with bulk_embedding():
    documents = embedder.embed_documents([f"Paragraph {i} of the refund policy." for i in range(20)])
print(json.dumps({"question": len(question), "documents": len(documents)}))
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "EMBEDDING_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"question": 384, "documents": 20}
    # The float graph, and the questions' int8 graph quantized from it.
    assert sorted(path.name.endswith("-int8q1.onnx") for path in tmp_path.glob("*.onnx")) == [False, True]


def test_a_corrupt_onnx_file_is_built_again_and_never_served(tmp_path):
    first = onnx_model_load(folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256)
    (path,) = tmp_path.glob("*.onnx")
    path.write_bytes(b"not a model")

    again = onnx_model_load(folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256)

    assert path.stat().st_size > 1_000_000
    assert cosines(again.embed(QUESTIONS[:2]), first.embed(QUESTIONS[:2])).min() > 0.99999


def test_a_corrupt_question_graph_is_quantized_again_and_never_served(tmp_path):
    first = query_model_load(folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256)
    (path,) = tmp_path.glob("*-int8q1.onnx")
    built = path.stat().st_mtime_ns
    assert query_model_load(folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256)
    assert path.stat().st_mtime_ns == built  # a good file is loaded, not made again
    path.write_bytes(b"not a model")

    again = query_model_load(folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256)

    assert path.stat().st_size > 1_000_000
    assert cosines(again.embed(QUESTIONS[:2]), first.embed(QUESTIONS[:2])).min() > 0.99999


def test_processes_starting_together_on_a_fresh_cache_each_get_the_question_graph(tmp_path):
    # Web processes of one machine start at once on an empty model folder (CI's topology test has
    # two): each quantizes, and neither may trip over the other's files.
    onnx_model_load(folder=model_folder(), cache_dir=tmp_path, weights_sha256=WEIGHTS_SHA256)
    probe = """
import django, sys
django.setup()
from pathlib import Path
from ai.embedding.embedders import WEIGHTS_SHA256, model_folder
from ai.embedding.onnx import query_model_load
model = query_model_load(folder=model_folder(), cache_dir=Path(sys.argv[1]), weights_sha256=WEIGHTS_SHA256)
print(model.embed(["How long do customers have to ask for a refund?"]).shape)
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    starts = [
        subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", probe, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(process.wait(timeout=300), *process.communicate()) for process in starts]

    for returncode, stdout, stderr in results:
        assert returncode == 0, stderr[-2000:]
        assert stdout.strip().endswith("(1, 384)")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in tmp_path.glob("*.onnx")), (
        "nothing left behind but the two graphs"
    )
    assert len(list(tmp_path.glob("*.onnx"))) == 2


def test_bulk_embedding_settles_on_the_fastest_configuration_never_slower_than_one_text_per_call():
    naive = BulkConfig(1, 1)
    slow_batches = BulkConfig(1, 32)
    fast_batches = BulkConfig(2, 8)
    seconds_per_text = {naive: 0.002, slow_batches: 0.004, fast_batches: 0.0005}
    used = []

    def embed(batch, config):
        used.append(config)
        time.sleep(seconds_per_text[config] * len(batch))
        return [[float(len(text))] for text in batch]

    plan = BulkPlan([naive, slow_batches, fast_batches], count_tokens=lambda text: 10)
    texts = [f"chunk {i:03d}" for i in range(300)]

    vectors = plan.embed_documents(texts, embed)

    assert vectors == [[float(len(text))] for text in texts]
    assert plan.best == fast_batches
    assert used.count(fast_batches) > 0.8 * len(used)


def test_bulk_mode_on_this_cpu_gives_the_vectors_of_the_serving_path():
    embedder = LocalEmbedder()
    texts = [f"In week {i} the warehouse team reviewed {3 * i} open items with the regional leads." for i in range(40)]
    plain = embedder.embed_documents(texts)
    with bulk_embedding():
        bulk = embedder.embed_documents(texts)
    assert cosines(plain, bulk).min() > 0.9999
