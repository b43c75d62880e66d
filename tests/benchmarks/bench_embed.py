"""embed_documents on ONNX Runtime against today's bulk path before it (PyTorch through
sentence-transformers, with the same adaptive batches and threads) and against one model call and
one save per chunk: never slower than either, and the same vectors as the PyTorch reference.

Needs the reference extra (`pip install -e '.[reference]'`): torch is only the baseline here.
"""

from __future__ import annotations

import io
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context

from ai.embedding.bulk import BulkPlan, candidate_configs
from ai.embedding.embedders import WEIGHTS_SHA256, get_embedder, model_folder
from ai.embedding.onnx import REFERENCE_FILE
from ai.ingestion.chunking import chunk_text, count_tokens
from ai.models import Chunk, Document
from ai.services.chunk_embeddings import chunks_embed_pending
from tests.benchmarks.baselines import chunks_embed_naively
from tests.benchmarks.conftest import print_table

DOCUMENTS = 45
# "Never slower", with room for a shared machine's noise between the runs.
NEVER_SLOWER = 0.95
SAME_VECTORS = 0.9999


class TorchBulkPath:
    """Today's bulk path before ONNX Runtime: sentence-transformers on torch, length-sorted batches
    with the threads and batch size that measure fastest (ai.embedding.bulk's plan), float32."""

    name = "local/sentence-transformers/all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            pytest.fail("the baseline needs PyTorch: pip install -e '.[reference]'")
        self.torch = torch
        self.model = SentenceTransformer(str(model_folder()), device="cpu", local_files_only=True)
        self.plan = BulkPlan(candidate_configs())

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=max(1, len(texts)), normalize_embeddings=True, show_progress_bar=False
        )

    def _batch(self, texts: list[str], config) -> np.ndarray:  # noqa: ANN001
        self.torch.set_num_threads(config.threads)
        return self.encode(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.plan.embed_documents(texts, self._batch)


def reference_vectors_write(path: Path = REFERENCE_FILE) -> None:
    """Remake ai/embedding/minilm_reference.json with the PyTorch reference (same texts)."""
    import sentence_transformers
    import torch

    reference = json.loads(path.read_text(encoding="utf-8"))
    vectors = TorchBulkPath().encode(reference["texts"])
    reference.update(
        weights_sha256=WEIGHTS_SHA256,
        made_with=f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}",
        vectors=[[round(float(value), 8) for value in row] for row in vectors],
    )
    vectors = reference.pop("vectors")
    text = json.dumps(reference, ensure_ascii=False, indent=1)[:-2]  # one vector a line, the rest indented
    text += ',\n "vectors": [\n' + ",\n".join(f"  {json.dumps(row)}" for row in vectors) + "\n ]\n}\n"
    path.write_text(text, encoding="utf-8")


TOPICS = [
    "warehouse shipping",
    "customer support",
    "quarterly finance",
    "hiring plans",
    "office safety",
    "product roadmap",
]


def document_text(n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    paragraphs = []
    for p in range(12):
        sentences = [
            f"In week {p + 1} the {topic} team in site {n} reviewed {3 * p + n} open items with the regional leads.",
            f"Most of the delays came from suppliers in zone {p % 5}, and the backlog shrank by {p + 2} percent.",
            f"The next review of {topic} is planned after the audit, when the numbers for site {n} are final.",
        ]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def unembed_all() -> None:
    Chunk.objects.update(embedding=None, embedding_model="")


def stored_vectors() -> tuple[list[int], np.ndarray]:
    rows = list(Chunk.objects.order_by("id").values_list("id", "embedding"))
    return [row[0] for row in rows], np.asarray([row[1] for row in rows], dtype=np.float32)


def recall_at_10(
    old: tuple[list[int], np.ndarray], old_q: np.ndarray, new: tuple[list[int], np.ndarray], new_q: np.ndarray
) -> float:
    """Share of the exact top 10 (by cosine) that the new vectors find, averaged over the questions."""
    (old_ids, old_docs), (new_ids, new_docs) = old, new
    assert old_ids == new_ids
    old_top = np.argsort(-(old_q @ old_docs.T), axis=1)[:, :10]
    new_top = np.argsort(-(new_q @ new_docs.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(old_top, new_top, strict=True)]))


def timed(call) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


@pytest.mark.benchmark
def test_the_reference_file_holds_what_the_pytorch_reference_makes():
    reference = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    vectors = TorchBulkPath().encode(reference["texts"])
    assert reference["weights_sha256"] == WEIGHTS_SHA256
    assert (np.sum(vectors * np.asarray(reference["vectors"]), axis=1) > 0.999999).all()


@pytest.mark.benchmark
def test_embed_documents_on_onnx_runtime_is_never_slower_than_the_torch_bulk_path(acme, settings):
    embedder = get_embedder()
    embedder.embed_documents(["warm up the model"])
    torch_path = TorchBulkPath()
    torch_path.encode(["warm up the model"])
    with tenant_context(acme.tenant):
        for n in range(DOCUMENTS):
            text = document_text(n)
            document = Document.objects.create(title=f"Report {n}", content=text, status="pending")
            pieces = chunk_text(text, chunk_tokens=settings.CHUNK_TOKENS, overlap_tokens=settings.CHUNK_OVERLAP_TOKENS)
            Chunk.objects.bulk_create(
                Chunk(
                    document=document,
                    collection_id=document.collection_id,
                    position=i,
                    text=piece,
                    token_count=count_tokens(piece),
                )
                for i, piece in enumerate(pieces)
            )
            Document.objects.filter(pk=document.pk).update(chunk_count=len(pieces))
        total = Chunk.objects.count()
        mean_tokens = sum(Chunk.objects.values_list("token_count", flat=True)) / total

        naive_s, naive_done = timed(lambda: chunks_embed_naively(embedder=embedder))
        unembed_all()
        # Today's bulk path before: the same batches and bulk updates, the model on torch.
        torch_s, torch_done = timed(lambda: chunks_embed_pending(embedder=torch_path))
        torch_vectors = stored_vectors()
        unembed_all()
        out = io.StringIO()
        # The command as an operator runs it: batches, bulk updates, threads and batch size by measuring.
        command_s, _ = timed(
            lambda: call_command("embed_documents", schema=acme.tenant.schema_name, stdout=out, stderr=io.StringIO())
        )
        assert f"embedded {total} chunk(s)" in out.getvalue()
        assert naive_done == torch_done == total
        onnx_vectors = stored_vectors()

    naive_rate, torch_rate, command_rate = total / naive_s, total / torch_s, total / command_s
    print_table(
        f"Embedding {total} chunks (mean {mean_tokens:.0f} word pieces), {os.cpu_count()} cores",
        ["method", "seconds", "chunks/s", "x torch bulk"],
        [
            ["naive: one ONNX call + one save per chunk (1 thread)", naive_s, naive_rate, naive_rate / torch_rate],
            [
                f"before: torch bulk path (adaptive; chose {torch_path.plan.best.label})",
                torch_s,
                torch_rate,
                1.0,
            ],
            [
                "now: manage.py embed_documents on ONNX Runtime (adaptive)",
                command_s,
                command_rate,
                command_rate / torch_rate,
            ],
        ],
    )
    same = np.sum(torch_vectors[1] * onnx_vectors[1], axis=1)
    questions = [f"What did the {topic} team review in week {week}?" for topic in TOPICS for week in (2, 5, 9)]
    torch_questions = torch_path.encode(questions)
    onnx_questions = np.asarray(embedder.embed_queries(questions))
    recall = recall_at_10(torch_vectors, torch_questions, onnx_vectors, onnx_questions)
    print(
        f"\ncosine of the ONNX Runtime vectors to the torch ones over {total} chunks: min {same.min():.7f}, "
        f"mean {same.mean():.7f}; questions: min {np.sum(torch_questions * onnx_questions, axis=1).min():.7f}; "
        f"recall@10 of search against the torch vectors: {recall:.3f}"
    )
    assert same.min() >= SAME_VECTORS
    assert recall >= 0.99
    assert command_rate >= NEVER_SLOWER * torch_rate, "embed_documents must never be slower than the torch bulk path"
    assert command_rate >= NEVER_SLOWER * naive_rate, "embed_documents must never be slower than the naive loop"


INGESTED = int(os.environ.get("BENCH_INGEST_DOCUMENTS", "60"))
FLOOR_THREADS = 2


def report_text(n: int) -> str:
    """A 5-20 KB report of its own (``document_text``'s paragraphs, as many as the size needs)."""
    paragraphs = 16 + (n * 7) % 50
    return "\n\n".join(document_text(n * 100 + p).split("\n\n")[0] for p in range(paragraphs))


def _extra_env() -> dict[str, str]:
    return dict(item.split("=", 1) for item in os.environ.get("BENCH_INGEST_ENV", "").split() if "=" in item)


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.django_db
def test_a_job_worker_ingests_one_tenants_upload_near_the_machines_floor(django_db_setup, django_db_blocker):
    """One job worker (concurrency 2, as deployed) ingests one tenant's INGESTED reports of 5-20 KB
    uploaded through the API, against the floor: the same chunks embedded in this process by the
    same ONNX model with FLOOR_THREADS threads, in batches of EMBEDDING_BATCH_SIZE. Chunks a second
    from the first document ready to the last (the model's load and warm-up left out)."""
    from django.conf import settings as django_settings

    from ai.embedding.embedders import _load_model
    from tests.benchmarks.bench_memory import deployed_env
    from tests.processes import database_backends_end, free_port, procfile_argv, running, wait_for

    acme = django_db_setup["acme"]
    port = free_port()
    env = {**deployed_env(port=port, web_workers=1), **_extra_env()}
    headers = {"Host": f"{acme.tenant.subdomain}.localhost", "Authorization": f"Token {acme.owner_token}"}

    def ready() -> list[tuple[int, float]]:
        with tenant_context(acme.tenant):
            return list(
                Document.objects.filter(title__startswith="Ingest ", status="ready").values_list("id", "updated")
            )

    with django_db_blocker.unblock():
        try:
            with running(procfile_argv("web", env, overrides={"--host": "127.0.0.1"}), env=env):
                wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "127.0.0.1"}, timeout=240)
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
                    for n in range(INGESTED):
                        body = {"title": f"Ingest {n}", "content": report_text(n)}
                        assert http.post("/api/documents/", json=body).status_code == 201
                with running(procfile_argv("worker", env), env=env):
                    deadline = time.monotonic() + 1800
                    while len(ready()) < INGESTED:
                        assert time.monotonic() < deadline, f"{len(ready())} of {INGESTED} ingested"
                        time.sleep(0.5)
            done = sorted(ready(), key=lambda row: row[1])
            with tenant_context(acme.tenant):
                later = [document_id for document_id, _ in done[1:]]
                texts = list(Chunk.objects.filter(document_id__in=later).values_list("text", flat=True))
        finally:
            database_backends_end()
    seconds = (done[-1][1] - done[0][1]).total_seconds()
    worker_rate = len(texts) / seconds

    model = _load_model(model_folder(), WEIGHTS_SHA256)
    model.embed(texts[:8], threads=FLOOR_THREADS)  # warm the two-thread session
    batch = django_settings.EMBEDDING_BATCH_SIZE
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        model.embed(texts[start : start + batch], threads=FLOOR_THREADS)
    floor_rate = len(texts) / (time.perf_counter() - started)

    print_table(
        f"One tenant's {INGESTED} reports of 5-20 KB ({len(texts)} chunks after the first document), chunks/s",
        ["path", "chunks/s", "/ floor"],
        [
            ["job worker (concurrency 2), one tenant's queue", worker_rate, worker_rate / floor_rate],
            [f"floor: the same chunks, this process, {FLOOR_THREADS} threads", floor_rate, 1.0],
        ],
    )
    print(f"goal: >= 0.9x the floor -> {'met' if worker_rate >= 0.9 * floor_rate else 'NOT met'}")


WORKERS_DOCUMENTS = int(os.environ.get("BENCH_WORKERS_DOCUMENTS", "40"))
# (job worker processes, jobs at once per worker, model threads per worker: 0 is every core)
WORKER_LAYOUTS = [(1, 1, 1), (2, 1, 1), (1, 2, 0), (2, 2, 0)]


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.django_db
def test_ingestion_throughput_grows_with_job_workers(django_db_setup, django_db_blocker):
    """Two tenants each upload half of WORKERS_DOCUMENTS reports through the API (a tenant's
    ingestion runs one job at a time, so one tenant alone cannot use a second worker); then 1 or 2
    job workers ingest them. Workers of one job and one model thread each, a core each: the second
    worker's core must add throughput (how workers scale on a machine with cores to spare). Workers
    as deployed (two jobs at once, every core): on this machine the first already uses both cores,
    and a second must not be slower. Chunks a second from the first document ready to the last."""
    from tests.benchmarks.bench_memory import deployed_env
    from tests.processes import database_backends_end, free_port, procfile_argv, running, wait_for

    worlds = [django_db_setup["acme"], django_db_setup["globex"]]
    port = free_port()
    base_env = deployed_env(port=port, web_workers=1)

    def ready() -> list[tuple[int, float, int]]:
        rows = []
        for world in worlds:
            with tenant_context(world.tenant):
                done = Document.objects.filter(title__startswith="Workers ", status="ready")
                rows += [
                    (pk, updated, Chunk.objects.filter(document_id=pk).count())
                    for pk, updated in done.values_list("id", "updated")
                ]
        return rows

    def clear() -> None:
        for world in worlds:
            with tenant_context(world.tenant):
                Document.objects.filter(title__startswith="Workers ").delete()

    results = []
    with django_db_blocker.unblock():
        try:
            for workers, jobs, threads in WORKER_LAYOUTS:
                clear()
                env = {**base_env, "EMBEDDING_WORKER_THREADS": str(threads), "JOBS_WORKER_CONCURRENCY": str(jobs)}
                with running(procfile_argv("web", env, overrides={"--host": "127.0.0.1"}), env=env):
                    wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "127.0.0.1"}, timeout=240)
                    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                        for n in range(WORKERS_DOCUMENTS):
                            world = worlds[n % 2]
                            headers = {"Host": world.host, "Authorization": f"Token {world.owner_token}"}
                            body = {"title": f"Workers {n}", "content": report_text(n)}
                            assert http.post("/api/documents/", json=body, headers=headers).status_code == 201
                with ExitStack() as stack:
                    for _ in range(workers):
                        stack.enter_context(running(procfile_argv("worker", env), env=env))
                    deadline = time.monotonic() + 1800
                    while len(ready()) < WORKERS_DOCUMENTS:
                        assert time.monotonic() < deadline, f"{len(ready())} of {WORKERS_DOCUMENTS} ingested"
                        time.sleep(0.5)
                done = sorted(ready(), key=lambda row: row[1])
                chunks = sum(row[2] for row in done[1:])
                seconds = (done[-1][1] - done[0][1]).total_seconds()
                results.append((workers, jobs, threads, chunks / seconds))
        finally:
            clear()
            database_backends_end()

    rate = {(workers, jobs): value for workers, jobs, _, value in results}
    print_table(
        f"{WORKERS_DOCUMENTS} reports of 5-20 KB from two tenants, chunks/s, {os.cpu_count()} cores",
        ["job workers", "jobs at once each", "model threads each", "chunks/s", "/ one such worker"],
        [
            [workers, jobs, threads or "every core", value, value / rate[(1, jobs)]]
            for workers, jobs, threads, value in results
        ],
    )
    assert rate[(2, 1)] >= 1.5 * rate[(1, 1)], "a second worker on a free core must add throughput"
    assert rate[(2, 2)] >= 0.9 * rate[(1, 2)], "two workers must never be slower than one"
