"""Embedding stored chunks in bulk: what `embed_documents` runs, resumable batch by batch."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.models import Q, QuerySet

from ai.embedding.embedders import Embedder, get_embedder
from ai.models import Chunk, Document


def chunks_embeddings_save(*, chunks: list[Chunk], vectors: list[list[float]], embedder: Embedder) -> int:
    """Store computed embeddings on their chunks in one bulk UPDATE (call inside a transaction).

    Returns how many chunks were still there to update (fewer when they were replaced meanwhile).
    """
    for chunk, vector in zip(chunks, vectors, strict=True):
        chunk.embedding = vector
        chunk.embedding_model = embedder.name
    return Chunk.objects.bulk_update(chunks, ["embedding", "embedding_model"], batch_size=len(chunks) or None)


def _chunks_needing_embedding(*, embedder: Embedder, reembed: bool) -> QuerySet[Chunk]:
    needed = Q(embedding__isnull=True)
    if reembed:
        # A model change: everything not yet embedded by this model, so an interrupted run resumes.
        needed |= ~Q(embedding_model=embedder.name)
    return Chunk.objects.filter(needed)


def chunks_embed_pending(
    *,
    batch_size: int = 256,
    reembed: bool = False,
    embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Embed every chunk of this schema that needs it; each batch commits on its own.

    Returns the number of chunks embedded. ``progress(done, total)`` is called after each batch.
    """
    embedder = embedder or get_embedder()
    pending = _chunks_needing_embedding(embedder=embedder, reembed=reembed)
    total = pending.count()
    done = 0
    last_id = 0
    while True:
        batch = list(pending.filter(id__gt=last_id).order_by("id").only("id", "text", "document_id")[:batch_size])
        if not batch:
            break
        vectors = embedder.embed_documents([chunk.text for chunk in batch])
        with transaction.atomic():
            chunks_embeddings_save(chunks=batch, vectors=vectors, embedder=embedder)
            # A document whose last chunk this was is searchable now, not at the end of the run.
            _documents_mark_ready(document_ids={chunk.document_id for chunk in batch})
        last_id = batch[-1].id
        done += len(batch)
        if progress:
            progress(done, total)
    _documents_mark_ready()
    return done


def _documents_mark_ready(*, document_ids: set[int] | None = None) -> None:
    """Documents whose chunks all have embeddings now are searchable, including those whose
    ingestion failed at the embedding step earlier."""
    documents = Document.objects.filter(status__in=[Document.Status.PENDING, Document.Status.FAILED], chunk_count__gt=0)
    if document_ids is not None:
        documents = documents.filter(id__in=document_ids)
    documents.exclude(chunks__embedding__isnull=True).update(status=Document.Status.READY, error="")
