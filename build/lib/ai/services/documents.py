"""Documents: create from text or an upload, update, delete, and ingest (chunk + embed) in the background."""

from __future__ import annotations

import logging
from pathlib import PurePath

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from ai.chunking import chunk_text, count_tokens
from ai.embedders import get_embedder
from ai.extraction import extract_text
from ai.models import Chunk, Document
from ai.services.chunk_embeddings import chunks_embeddings_save
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.jobs import TransientJobError, tenant_job_defer

logger = logging.getLogger(__name__)


def _too_large(what: str, limit: int, unit: str) -> ApplicationError:
    return ApplicationError(
        f"{what} is too large; the limit is {limit:,} {unit}.", code="payload_too_large", status=413
    )


def _text_from_upload(upload: UploadedFile) -> str:
    if upload.size is not None and upload.size > settings.DOCUMENT_MAX_UPLOAD_BYTES:
        raise _too_large("The file", settings.DOCUMENT_MAX_UPLOAD_BYTES, "bytes")
    data = upload.read(settings.DOCUMENT_MAX_UPLOAD_BYTES + 1)
    if len(data) > settings.DOCUMENT_MAX_UPLOAD_BYTES:
        raise _too_large("The file", settings.DOCUMENT_MAX_UPLOAD_BYTES, "bytes")
    return extract_text(filename=upload.name or "upload", content_type=upload.content_type, data=data)


def _checked_content(content: str) -> str:
    if not content.strip():
        raise ApplicationError(
            "The document has no text.",
            code="empty_document",
            status=400,
            extra={"fields": {"content": ["This field may not be blank."]}},
        )
    if len(content) > settings.DOCUMENT_MAX_CHARS:
        raise _too_large("The document", settings.DOCUMENT_MAX_CHARS, "characters")
    return content


INGEST_JOB = "ai.document_ingest"


def _schedule_ingest(document: Document) -> None:
    # In the caller's transaction: the job exists exactly when the document row does.
    tenant_job_defer(INGEST_JOB, document_id=document.id)


def document_create(*, user: User, title: str = "", content: str = "", upload: UploadedFile | None = None) -> Document:
    """Store a document (text now, chunks and embeddings in the background) and return it pending."""
    source_name = content_type = ""
    if upload is not None:
        content = _text_from_upload(upload)
        source_name = PurePath(upload.name or "upload").name[:255]
        content_type = (upload.content_type or "")[:100]
        title = title or PurePath(source_name).stem or source_name
    if not title.strip():
        raise ApplicationError(
            "A title is required.", code="invalid", status=400, extra={"fields": {"title": ["This field is required."]}}
        )
    content = _checked_content(content)
    with transaction.atomic():
        document = Document.objects.create(
            title=title.strip()[:300],
            content=content,
            source_name=source_name,
            content_type=content_type,
            created_by=user,
        )
        _schedule_ingest(document)
    return document


def document_update(*, document: Document, title: str | None = None, content: str | None = None) -> Document:
    """Change a document; new content is re-chunked and re-embedded in the background."""
    fields = []
    if title is not None:
        document.title = title.strip()[:300]
        fields.append("title")
    content_changed = content is not None and content != document.content
    if content_changed:
        document.content = _checked_content(content)
        document.status = Document.Status.PENDING
        document.error = ""
        fields += ["content", "status", "error"]
    with transaction.atomic():
        document.save(update_fields=[*fields, "updated"])
        if content_changed:
            _schedule_ingest(document)
    return document


def document_delete(*, document: Document) -> None:
    document.delete()


def document_ingest(*, document_id: int, final_attempt: bool = True) -> None:
    """Chunk, store, then embed one document; the ingestion job runs it in the tenant's schema.

    Safe to run again (a retry, a worker that died mid-job): the chunks are replaced, never added
    to. Chunks are stored before they are embedded, so when the embedding provider is down the
    document waits with a readable error and the job raises ``TransientJobError`` to be retried;
    on the ``final_attempt`` it is marked failed, and ``embed_documents`` or the retry action can
    finish it later.
    """
    document = Document.objects.filter(id=document_id).first()
    if document is None:
        return  # deleted before its turn came
    content = document.content
    try:
        texts = chunk_text(content, chunk_tokens=settings.CHUNK_TOKENS, overlap_tokens=settings.CHUNK_OVERLAP_TOKENS)
    except Exception as exc:  # noqa: BLE001 - any failure is shown on the document, not lost in a log
        _ingest_failed(document_id, content, exc)
        return
    chunks = _chunks_replace(document_id=document_id, content=content, texts=texts)
    if not chunks:
        return
    try:
        embedder = get_embedder()
        vectors = embedder.embed_documents([chunk.text for chunk in chunks])
    except ApplicationError as exc:
        if exc.status == 503 and not final_attempt:
            _ingest_failed(document_id, content, exc, status=Document.Status.PENDING, suffix=" Retrying shortly.")
            raise TransientJobError(exc.message) from exc
        _ingest_failed(document_id, content, exc)
        return
    except Exception as exc:  # noqa: BLE001
        _ingest_failed(document_id, content, exc)
        return
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(id=document_id, content=content).first()
        if current is None:
            return  # deleted or edited meanwhile; the newer ingest wins
        chunks_embeddings_save(chunks=chunks, vectors=vectors, embedder=embedder)
        current.status = Document.Status.READY
        current.error = ""
        current.save(update_fields=["status", "error", "updated"])


def document_ingest_retry(*, document: Document) -> Document:
    """Queue a failed (or stuck) document's ingestion again."""
    if document.status == Document.Status.READY:
        raise ApplicationError("This document is already indexed.", code="already_ready", status=409)
    with transaction.atomic():
        document.status = Document.Status.PENDING
        document.error = ""
        document.save(update_fields=["status", "error", "updated"])
        _schedule_ingest(document)
    return document


def _chunks_replace(*, document_id: int, content: str, texts: list[str]) -> list[Chunk]:
    """Store the document's new chunks (not yet embedded); [] if there is nothing to embed."""
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(id=document_id, content=content).first()
        if current is None:
            return []
        Chunk.objects.filter(document=current).delete()
        chunks = Chunk.objects.bulk_create(
            Chunk(document=current, position=position, text=text, token_count=count_tokens(text))
            for position, text in enumerate(texts)
        )
        current.chunk_count = len(chunks)
        current.status = Document.Status.PENDING if chunks else Document.Status.FAILED
        current.error = "" if chunks else "The document has no text to index."
        current.save(update_fields=["chunk_count", "status", "error", "updated"])
        return chunks


def _ingest_failed(
    document_id: int, content: str, exc: Exception, *, status: str = Document.Status.FAILED, suffix: str = ""
) -> None:
    logger.warning("ingesting document %s failed: %s", document_id, exc)
    message = exc.message if isinstance(exc, ApplicationError) else f"{exc.__class__.__name__}: {exc}"
    Document.objects.filter(id=document_id, content=content).update(status=status, error=(message + suffix)[:2000])
