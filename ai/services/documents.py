"""Documents: create from text or an upload, update, delete, and ingest (read + chunk + embed) in the background.

An upload is checked cheaply (size, type, a .docx's zip directory) and stored as it came; the
ingestion job reads it (in a child process with hard limits), then chunks and embeds the text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import Count, F, Max, Min

from ai.access import Reader, collections_readable, document_change_check
from ai.embedding.embedders import get_embedder
from ai.ingestion.chunking import chunk_text, count_tokens
from ai.ingestion.extraction import ParseLimits, extract_isolated, title_from_filename, upload_check
from ai.models import Chunk, Collection, Document, DocumentUpload, DocumentVersion
from ai.services.chunk_embeddings import chunks_embeddings_save
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.jobs import JobAborted, TransientJobError, tenant_job_defer
from core.platform.validators import UNSTORABLE_CODE, text_unstorable_reason
from tenants.audit.services import Action, audit_record
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def _too_large(what: str, limit: int, unit: str) -> ApplicationError:
    return ApplicationError(
        f"{what} is too large; the limit is {limit:,} {unit}.", code="payload_too_large", status=413
    )


def _upload_bytes(upload: UploadedFile) -> bytes:
    if upload.size is not None and upload.size > settings.DOCUMENT_MAX_UPLOAD_BYTES:
        raise _too_large("The file", settings.DOCUMENT_MAX_UPLOAD_BYTES, "bytes")
    data = bytes(upload.read(settings.DOCUMENT_MAX_UPLOAD_BYTES + 1))
    if len(data) > settings.DOCUMENT_MAX_UPLOAD_BYTES:
        raise _too_large("The file", settings.DOCUMENT_MAX_UPLOAD_BYTES, "bytes")
    return data


def _parse_limits() -> ParseLimits:
    return ParseLimits(
        max_chars=settings.DOCUMENT_MAX_CHARS,
        max_archive_members=settings.DOCUMENT_MAX_ARCHIVE_MEMBERS,
        max_unpacked_bytes=settings.DOCUMENT_MAX_UNPACKED_BYTES,
        max_compression_ratio=settings.DOCUMENT_MAX_COMPRESSION_RATIO,
        max_pdf_pages=settings.DOCUMENT_MAX_PDF_PAGES,
    )


def _storable(field: str, value: str) -> str:
    reason = text_unstorable_reason(value)
    if reason:
        raise ApplicationError(f"{field}: {reason}", code=UNSTORABLE_CODE, extra={"fields": {field: [reason]}})
    return value


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
# Chunks embedded per step of an ingestion. A worker's ingestions share one model, one batch at a
# time: short steps let another tenant's small document in between a large one's (and let a
# stopping worker stop soon).
INGEST_BATCH_MAX = 16


def _schedule_ingest(document: Document) -> None:
    # In the caller's transaction: the job exists exactly when the document row does.
    tenant_job_defer(INGEST_JOB, document_id=document.id)


def _collection_for(*, reader: Reader, collection_id: int | None) -> Collection:
    """Where a new document goes: the collection asked for, if the asker may read it (else 404, as
    if it did not exist), or the default one."""
    collections = collections_readable(reader)
    found = collections.filter(id=collection_id) if collection_id is not None else collections.filter(is_default=True)
    collection = found.first()
    if collection is None and collection_id is None:  # an API key given other collections only
        raise ApplicationError(
            "Say which collection: the default one is not among those you may add to.",
            code="collection_required",
            extra={"fields": {"collection_id": ["This field is required."]}},
        )
    if collection is None:
        raise ApplicationError(
            "No such collection.",
            code="collection_not_found",
            status=404,
            extra={"fields": {"collection_id": ["No such collection."]}},
        )
    return collection


def document_create(
    *,
    user: User,
    reader: Reader,
    title: str = "",
    content: str = "",
    upload: UploadedFile | None = None,
    collection_id: int | None = None,
) -> Document:
    """Store a document in a collection ``reader`` may read (default: the tenant's default one) and
    return it pending: text now, or an upload as it came (read, chunked and embedded by the
    ingestion job). Only cheap checks run here: size, type, archive bounds."""
    collection = _collection_for(reader=reader, collection_id=collection_id)
    source_name = content_type = ""
    data = b""
    if upload is not None:
        data = _upload_bytes(upload)
        source_name = _storable("file", PurePath(upload.name or "upload").name[:255])
        content_type = _storable("file", (upload.content_type or "")[:100])
        upload_check(
            filename=upload.name or "upload", content_type=upload.content_type, data=data, limits=_parse_limits()
        )
        title_from_file = not title.strip()
        title = title or title_from_filename(source_name)
    if not title.strip():
        raise ApplicationError(
            "A title is required.", code="invalid", status=400, extra={"fields": {"title": ["This field is required."]}}
        )
    if upload is None:
        content = _checked_content(content)
    with transaction.atomic():
        document = Document.objects.create(
            collection=collection,
            title=title.strip()[:300],
            content=content if upload is None else "",
            source_name=source_name,
            content_type=content_type,
            created_by=user,
        )
        if upload is not None:
            DocumentUpload.objects.create(
                document=document,
                data=data,
                filename=source_name,
                content_type=content_type,
                title_from_file=title_from_file,
            )
        _schedule_ingest(document)
    return document


def document_update(
    *,
    reader: Reader,
    document: Document,
    title: str | None = None,
    content: str | None = None,
    collection_id: int | None = None,
) -> Document:
    """Change a document (its owner, or an admin); new content is re-chunked and re-embedded in
    the background. Moving it takes a collection the asker may read."""
    document_change_check(reader=reader, document=document)
    fields = []
    if collection_id is not None and collection_id != document.collection_id:
        document.collection = _collection_for(reader=reader, collection_id=collection_id)
        fields.append("collection")
    if title is not None:
        document.title = title.strip()[:300]
        fields.append("title")
    content_changed = content is not None and content != document.content
    if content_changed:
        document.content = _checked_content(content)
        document.status = Document.Status.PENDING
        document.error = ""
        document.revision = F("revision") + 1
        fields += ["content", "status", "error", "revision"]
    with transaction.atomic():
        document.save(update_fields=[*fields, "updated"])
        if content_changed:
            document.refresh_from_db(fields=["revision"])
            DocumentUpload.objects.filter(document=document).delete()  # the new text wins over an unread file
            _schedule_ingest(document)
    return document


def document_replace(
    *,
    user: User,
    reader: Reader,
    document: Document,
    title: str = "",
    content: str = "",
    upload: UploadedFile[bytes] | None = None,
) -> Document:
    """Replace a document's text with a new version (pasted text or a file), keeping the current
    one as a DocumentVersion; the new one is read, chunked and embedded again in the background,
    and search reads it once it is ready. Its owner, or an admin; the title stays unless a new one
    is given (a file without one gives its own, as at upload)."""
    document_change_check(reader=reader, document=document)
    data = b""
    source_name, content_type = document.source_name, document.content_type
    if upload is not None:
        data = _upload_bytes(upload)
        source_name = _storable("file", PurePath(upload.name or "upload").name[:255])
        content_type = _storable("file", (upload.content_type or "")[:100])
        upload_check(
            filename=upload.name or "upload", content_type=upload.content_type, data=data, limits=_parse_limits()
        )
    else:
        content = _checked_content(content)
        source_name = content_type = ""
    with transaction.atomic():
        current = Document.objects.select_for_update().get(pk=document.pk)
        DocumentVersion.objects.create(
            document=current,
            number=current.version,
            title=current.title,
            content=current.content,
            source_name=current.source_name,
            content_type=current.content_type,
            created_by_id=current.created_by_id if current.version == 1 else _version_author(current),
            created=current.updated,
            replaced_by=user,
        )
        current.version += 1
        current.revision += 1
        current.title = title.strip()[:300] or current.title
        current.content = content if upload is None else ""
        current.source_name, current.content_type = source_name, content_type
        current.status, current.error = Document.Status.PENDING, ""
        current.save(
            update_fields=[
                "version",
                "revision",
                "title",
                "content",
                "source_name",
                "content_type",
                "status",
                "error",
                "updated",
            ]
        )
        DocumentUpload.objects.filter(document=current).delete()
        if upload is not None:
            DocumentUpload.objects.create(
                document=current,
                data=data,
                filename=source_name,
                content_type=content_type,
                title_from_file=not title.strip(),
            )
        _schedule_ingest(current)
    return current


def _version_author(document: Document) -> int | None:
    """Who made the current version: whoever replaced the one before it."""
    return (
        DocumentVersion.objects.filter(document=document, number=document.version - 1)
        .values_list("replaced_by_id", flat=True)
        .first()
    )


def document_versions(*, document: Document) -> list[DocumentVersion]:
    return list(
        DocumentVersion.objects.filter(document=document).select_related("created_by", "replaced_by").defer("content")
    )


def document_delete(*, reader: Reader, tenant: Tenant, document: Document, request: Any = None) -> None:
    """Delete a document and its passages (its owner, or an admin), with an audit entry."""
    document_change_check(reader=reader, document=document)
    with transaction.atomic():
        audit_record(
            tenant=tenant,
            action=Action.DOCUMENT_DELETED,
            target=f"document {document.pk}: {document.title}"[:300],
            changes={"collection_id": document.collection_id, "created_by": document.created_by_id},
            request=request,
        )
        document.delete()


def document_ingest(
    *, document_id: int, final_attempt: bool = True, should_stop: Callable[[], bool] = lambda: False
) -> None:
    """Read (an upload), chunk, store, then embed one document; the ingestion job runs it in the
    tenant's schema. An upload that cannot be read leaves the document failed with the reason.

    Safe to run again (a retry, a worker that died mid-job, two runs at once): the chunks are
    replaced, never added to, and a run marks the document ready only if the chunks it stored
    are still the document's and all embedded. Chunks are stored before they are embedded, batch
    by batch, so when the embedding provider or the database is down the document waits with a
    readable error and the job raises ``TransientJobError`` to be retried; on the
    ``final_attempt`` it is marked failed, and ``embed_documents`` or the retry action can finish
    it later. Between batches the run checks ``should_stop`` (its worker is shutting down) and
    raises ``JobAborted`` to be run again elsewhere. Any other database error fails the
    document with a readable reason instead of leaving it pending.
    """
    try:
        _ingest(document_id=document_id, final_attempt=final_attempt, should_stop=should_stop)
    except DatabaseError as exc:
        transient = _database_error_transient(exc)
        message = _database_error_message(exc)
        if transient and not final_attempt:
            _ingest_failed_record(document_id, message + " Retrying shortly.", status=Document.Status.PENDING)
            raise TransientJobError(message) from exc
        _ingest_failed_record(document_id, message, status=Document.Status.FAILED)
        if transient:
            raise  # the job shows failed too; the document says why


def _ingest(*, document_id: int, final_attempt: bool, should_stop: Callable[[], bool]) -> None:
    document = Document.objects.filter(id=document_id).first()
    if document is None:
        return  # deleted before its turn came
    if DocumentUpload.objects.filter(document_id=document_id).exists():
        extracted = _upload_extract(document_id=document_id)
        if extracted is None:
            return
        document.content, document.revision = extracted
    # The revision read with the text is this run's lock: an edit meanwhile bumps it, and its own
    # run stores the chunks and marks the document ready instead.
    content, revision = document.content, document.revision
    try:
        texts = chunk_text(content, chunk_tokens=settings.CHUNK_TOKENS, overlap_tokens=settings.CHUNK_OVERLAP_TOKENS)
    except Exception as exc:  # noqa: BLE001 - any failure is shown on the document, not lost in a log
        _ingest_failed(document_id, revision, exc)
        return
    chunks = _chunks_replace(document_id=document_id, revision=revision, texts=texts)
    if not chunks:
        return
    embedder = get_embedder()
    batch_size = max(1, min(settings.EMBEDDING_BATCH_SIZE, INGEST_BATCH_MAX))
    for start in range(0, len(chunks), batch_size):
        if should_stop():
            raise JobAborted(f"stopped after {start} of {len(chunks)} chunks of document {document_id}")
        batch = chunks[start : start + batch_size]
        try:
            vectors = embedder.embed_documents([chunk.text for chunk in batch])
        except ApplicationError as exc:
            if exc.status == 503 and not final_attempt:
                _ingest_failed(document_id, revision, exc, status=Document.Status.PENDING, suffix=" Retrying shortly.")
                raise TransientJobError(exc.message) from exc
            _ingest_failed(document_id, revision, exc)
            return
        except Exception as exc:  # noqa: BLE001
            _ingest_failed(document_id, revision, exc)
            return
        with transaction.atomic():
            if chunks_embeddings_save(chunks=batch, vectors=vectors, embedder=embedder) < len(batch):
                return  # another run replaced these chunks (a retry, an edit): it finishes the document
    _document_ready_if_complete(document_id=document_id, revision=revision, chunks=chunks)


def _document_ready_if_complete(*, document_id: int, revision: int, chunks: list[Chunk]) -> None:
    """Mark the document ready if the chunks this run stored are still exactly its chunks, all embedded.

    Chunk ids are the run's token: a run that replaced them (a retry while this one was still
    going, an edit) made new rows, so an older run can never declare the newer chunks ready.
    """
    ids = [chunk.id for chunk in chunks]
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(id=document_id, revision=revision).first()
        if current is None:
            return  # deleted or edited meanwhile; the newer ingest wins
        stored = Chunk.objects.filter(document=current).aggregate(
            total=Count("id"), embedded=Count("embedding"), first=Min("id"), last=Max("id")
        )
        if current.chunk_count != len(ids) or stored != {
            "total": len(ids),
            "embedded": len(ids),
            "first": min(ids),
            "last": max(ids),
        }:
            return
        current.status = Document.Status.READY
        current.error = ""
        current.save(update_fields=["status", "error", "updated"])


# SQLSTATE classes worth another attempt: the connection (08), a server shutting down or a
# statement cancelled (57), serialization and deadlock (40), and a full disk or exhausted memory
# or connections (53), which an operator frees.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")


def _database_error_transient(exc: DatabaseError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    return isinstance(exc, OperationalError | InterfaceError) or sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES


def _database_error_message(exc: DatabaseError) -> str:
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or ""
    reason = {
        "53100": "the database server is out of disk space",
        "53200": "the database server is out of memory",
        "53300": "the database server has too many connections",
    }.get(sqlstate)
    if reason is None and (sqlstate[:2] in ("08", "57") or isinstance(exc, InterfaceError)):
        reason = "the connection to the database was lost"
    if reason is None:
        primary = getattr(getattr(cause, "diag", None), "message_primary", None) or str(exc)
        reason = f"the database refused it ({primary.strip()[:300]}"
        reason += f", SQLSTATE {sqlstate})" if sqlstate else ")"
    return f"The document could not be stored: {reason}."


def _ingest_failed_record(document_id: int, message: str, *, status: str) -> None:
    """Write why on the document, if the database lets us (it may be what failed)."""
    logger.warning("ingesting document %s failed: %s", document_id, message)
    try:
        with transaction.atomic():
            Document.objects.filter(id=document_id).update(status=status, error=message[:2000])
    except DatabaseError:
        logger.exception("could not record the failure on document %s", document_id)


def _upload_extract(*, document_id: int) -> tuple[str, int] | None:
    """Read the stored upload into the document's text; returns the text and its revision (None
    when it failed or was replaced).

    The upload stays until its text is saved, so a failed file can be retried (say, with higher
    limits); the text replaces it in one transaction.
    """
    upload = DocumentUpload.objects.filter(document_id=document_id).first()
    if upload is None:
        return None
    try:
        text, file_title = extract_isolated(
            filename=upload.filename,
            content_type=upload.content_type,
            data=bytes(upload.data),
            limits=_parse_limits(),
            timeout_seconds=settings.DOCUMENT_PARSE_TIMEOUT_SECONDS,
            memory_bytes=settings.DOCUMENT_PARSE_MEMORY_MB * 1024 * 1024,
        )
    except ApplicationError as exc:
        logger.warning("reading the upload of document %s failed: %s", document_id, exc.message)
        Document.objects.filter(id=document_id, upload__isnull=False).update(
            status=Document.Status.FAILED, error=exc.message[:2000]
        )
        return None
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(id=document_id, upload__isnull=False).first()
        if current is None:
            return None  # deleted, or given new text meanwhile (its own ingest follows)
        current.content = text
        current.revision += 1
        fields = ["content", "revision", "updated"]
        if upload.title_from_file and file_title:
            current.title = file_title
            fields.append("title")
        current.save(update_fields=fields)
        DocumentUpload.objects.filter(document_id=document_id).delete()
    return text, current.revision


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


def _chunks_replace(*, document_id: int, revision: int, texts: list[str]) -> list[Chunk]:
    """Store the document's new chunks (not yet embedded); [] if there is nothing to embed, or the
    document is no longer at ``revision``."""
    with transaction.atomic():
        current = Document.objects.select_for_update().filter(id=document_id, revision=revision).first()
        if current is None:
            return []
        Chunk.objects.filter(document=current).delete()
        chunks = Chunk.objects.bulk_create(
            Chunk(
                document=current,
                collection=current.collection,
                position=position,
                text=text,
                token_count=count_tokens(text),
            )
            for position, text in enumerate(texts)
        )
        current.chunk_count = len(chunks)
        current.status = Document.Status.PENDING if chunks else Document.Status.FAILED
        current.error = "" if chunks else "The document has no text to index."
        current.save(update_fields=["chunk_count", "status", "error", "updated"])
        return chunks


def _ingest_failed(
    document_id: int, revision: int, exc: Exception, *, status: str = Document.Status.FAILED, suffix: str = ""
) -> None:
    logger.warning("ingesting document %s failed: %s", document_id, exc)
    message = exc.message if isinstance(exc, ApplicationError) else f"{exc.__class__.__name__}: {exc}"
    Document.objects.filter(id=document_id, revision=revision).update(status=status, error=(message + suffix)[:2000])
