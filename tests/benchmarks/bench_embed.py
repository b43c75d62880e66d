"""embed_documents throughput: batched model calls and bulk updates vs one model call and one save per chunk."""

from __future__ import annotations

import io
import time

import pytest
import torch
from django.core.management import call_command
from django_tenants.utils import tenant_context

from ai.chunking import chunk_text, count_tokens
from ai.embeddings import get_embedder
from ai.models import Chunk, Document
from ai.services.embedding import chunks_embed_naively, chunks_embed_pending
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
        out = io.StringIO()
        batched_s, _ = timed(
            lambda: call_command("embed_documents", schema=acme.tenant.schema_name, stdout=out, stderr=io.StringIO())
        )
        assert f"embedded {total} chunk(s)" in out.getvalue()
        unembed_all()
        # What the same batches cost with bfloat16 matmuls (AMX/AVX-512 BF16 CPUs): not used by Strata today.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_s, bf16_done = timed(lambda: chunks_embed_pending(embedder=embedder))
        assert naive_done == bf16_done == total

    naive_rate, batched_rate, bf16_rate = total / naive_s, total / batched_s, total / bf16_s
    print_table(
        f"Embedding {total} chunks (mean {mean_tokens:.0f} word pieces) with {embedder.name}, {torch.get_num_threads()} CPU threads",
        ["method", "seconds", "chunks/s", "x naive"],
        [
            ["naive: one model call + one save per chunk", naive_s, naive_rate, 1.0],
            [
                f"embed_documents: batches of {settings.EMBEDDING_BATCH_SIZE}, bulk_update",
                batched_s,
                batched_rate,
                batched_rate / naive_rate,
            ],
            ["same batches, bfloat16 autocast (experiment)", bf16_s, bf16_rate, bf16_rate / naive_rate],
        ],
    )
    print(
        f"\ngoal: batched >= {GOAL_RATIO}x naive -> {'met' if batched_rate / naive_rate >= GOAL_RATIO else 'NOT met'}"
    )
    assert batched_rate > naive_rate
