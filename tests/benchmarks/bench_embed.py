"""embed_documents throughput: batched model calls and bulk updates vs one model call and one save per chunk."""

from __future__ import annotations

import io
import os
import time

import pytest
from django.core.management import call_command
from django_tenants.utils import tenant_context

from ai.chunking import chunk_text, count_tokens
from ai.embedders import _cpu_has_amx, get_embedder
from ai.models import Chunk, Document
from ai.services.chunk_embeddings import chunks_embed_pending
from tests.benchmarks.baselines import chunks_embed_naively
from tests.benchmarks.conftest import print_table

DOCUMENTS = 45
GOAL_RATIO = 5.0

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


def timed(call) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


@pytest.mark.benchmark
def test_batched_embedding_is_faster_than_one_chunk_at_a_time(acme, settings):
    embedder = get_embedder()
    embedder.embed_documents(["warm up the model"])
    with tenant_context(acme.tenant):
        for n in range(DOCUMENTS):
            text = document_text(n)
            document = Document.objects.create(title=f"Report {n}", content=text, status="pending")
            pieces = chunk_text(text, chunk_tokens=settings.CHUNK_TOKENS, overlap_tokens=settings.CHUNK_OVERLAP_TOKENS)
            Chunk.objects.bulk_create(
                Chunk(document=document, position=i, text=piece, token_count=count_tokens(piece))
                for i, piece in enumerate(pieces)
            )
            Document.objects.filter(pk=document.pk).update(chunk_count=len(pieces))
        total = Chunk.objects.count()
        mean_tokens = sum(Chunk.objects.values_list("token_count", flat=True)) / total

        naive_s, naive_done = timed(lambda: chunks_embed_naively(embedder=embedder))
        unembed_all()
        # Batching and bulk updates alone, with the serving configuration (one thread, float32).
        batched_only_s, batched_only_done = timed(lambda: chunks_embed_pending(embedder=embedder))
        unembed_all()
        out = io.StringIO()
        # The command as an operator runs it: batches, bulk updates, every core, bf16 on AMX CPUs.
        command_s, _ = timed(
            lambda: call_command("embed_documents", schema=acme.tenant.schema_name, stdout=out, stderr=io.StringIO())
        )
        assert f"embedded {total} chunk(s)" in out.getvalue()
        assert naive_done == batched_only_done == total

    naive_rate, batched_rate, command_rate = total / naive_s, total / batched_only_s, total / command_s
    print_table(
        f"Embedding {total} chunks (mean {mean_tokens:.0f} word pieces) with {embedder.name}",
        ["method", "seconds", "chunks/s", "x naive"],
        [
            ["naive: one model call + one save per chunk (1 thread, float32)", naive_s, naive_rate, 1.0],
            [
                f"batches of {settings.EMBEDDING_BATCH_SIZE} + bulk_update (1 thread, float32)",
                batched_only_s,
                batched_rate,
                batched_rate / naive_rate,
            ],
            [
                f"manage.py embed_documents (batches, {os.cpu_count()} threads, bf16 if AMX: {_cpu_has_amx()})",
                command_s,
                command_rate,
                command_rate / naive_rate,
            ],
        ],
    )
    print(
        f"\ngoal: embed_documents >= {GOAL_RATIO}x naive -> "
        f"{'met' if command_rate / naive_rate >= GOAL_RATIO else 'NOT met'}"
    )
    assert command_rate > batched_rate > naive_rate
