"""Ingestion when the database fails under it or another run overlaps it: the document always ends
in a state that tells the truth (ready only with all of its chunks embedded, failed with a reason,
or pending while a retry is due)."""

from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from ai.access import Reader, reader_of
from ai.models import Chunk, Document
from ai.services import documents
from core.platform.jobs import JobAborted, TransientJobError
from tests.ai.factories import DocumentFactory

pytestmark = pytest.mark.django_db

TEXT = "\n\n".join(f"Section {n}: the boiler in block {n} is serviced every {n + 2} months." * 6 for n in range(12))


def fault_install(*, sqlstate: str, message: str, times: int) -> None:
    """Make the next ``times`` inserts of chunks in this schema fail as PostgreSQL would, with ``sqlstate``."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE chunk_insert_faults")
        cursor.execute(
            f"""
            CREATE FUNCTION chunk_insert_fault() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF nextval('chunk_insert_faults') <= {times} THEN
                    RAISE EXCEPTION '{message}' USING ERRCODE = '{sqlstate}';
                END IF;
                RETURN NULL;
            END $$
            """
        )
        cursor.execute(
            "CREATE TRIGGER chunk_insert_fault BEFORE INSERT ON ai_chunk"
            " FOR EACH STATEMENT EXECUTE FUNCTION chunk_insert_fault()"
        )


def state(document_id: int) -> tuple[str, str, int, int, int]:
    document = Document.objects.get(id=document_id)
    chunks = Chunk.objects.filter(document_id=document_id)
    return (
        document.status,
        document.error,
        document.chunk_count,
        chunks.count(),
        chunks.filter(embedding__isnull=True).count(),
    )


@pytest.fixture
def document(acme):  # noqa: ANN001
    with tenant_context(acme.tenant):
        yield DocumentFactory(title="Boilers", content=TEXT, status=Document.Status.PENDING)


def test_a_database_error_that_will_not_pass_fails_the_document_with_a_readable_reason(document):
    fault_install(sqlstate="23514", message="new row violates check constraint", times=1)
    documents.document_ingest(document_id=document.id, final_attempt=False)  # no retry: it would fail again

    status, error, *_ = state(document.id)
    assert status == Document.Status.FAILED
    assert error == (
        "The document could not be stored: the database refused it (new row violates check constraint, SQLSTATE 23514)."
    )


def test_a_full_disk_keeps_the_document_pending_with_the_reason_and_a_retry_finishes_it(document):
    fault_install(sqlstate="53100", message="could not extend file: No space left on device", times=1)
    with pytest.raises(TransientJobError):
        documents.document_ingest(document_id=document.id, final_attempt=False)
    status, error, *_ = state(document.id)
    assert (status, error) == (
        Document.Status.PENDING,
        "The document could not be stored: the database server is out of disk space. Retrying shortly.",
    )

    documents.document_ingest(document_id=document.id, final_attempt=False)  # the retry, the disk freed
    status, error, chunk_count, chunks, unembedded = state(document.id)
    assert (status, error, unembedded) == (Document.Status.READY, "", 0)
    assert chunk_count == chunks > 1


def test_a_full_disk_on_the_last_attempt_fails_the_document(document):
    fault_install(sqlstate="53100", message="could not extend file: No space left on device", times=1)
    with pytest.raises(Exception, match="No space left on device"):
        documents.document_ingest(document_id=document.id, final_attempt=True)
    status, error, *_ = state(document.id)
    assert (status, error) == (
        Document.Status.FAILED,
        "The document could not be stored: the database server is out of disk space.",
    )


def test_a_run_whose_chunks_were_replaced_by_a_newer_run_never_marks_the_document_ready(document, settings):
    settings.EMBEDDING_BATCH_SIZE = 2
    replaced = []

    def newer_run_starts() -> bool:
        # Between this run's batches, a retry of the job (elsewhere) stores its own chunks.
        if not replaced:
            texts = [chunk.text for chunk in Chunk.objects.filter(document_id=document.id).order_by("position")]
            replaced.append(documents._chunks_replace(document_id=document.id, revision=document.revision, texts=texts))
        return False

    documents.document_ingest(document_id=document.id, should_stop=newer_run_starts)
    status, _, chunk_count, chunks, unembedded = state(document.id)
    assert status == Document.Status.PENDING, "ready, but the newer run's chunks have no embeddings"
    assert chunk_count == chunks == unembedded == len(replaced[0])

    documents.document_ingest(document_id=document.id)  # the newer run, finishing
    assert state(document.id)[0] == Document.Status.READY
    assert state(document.id)[4] == 0


def test_a_run_asked_to_stop_stops_between_batches_and_the_next_run_finishes(document, settings):
    settings.EMBEDDING_BATCH_SIZE = 2
    calls = []

    def stop_after_two_batches() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(JobAborted):
        documents.document_ingest(document_id=document.id, should_stop=stop_after_two_batches)
    status, _, chunk_count, chunks, unembedded = state(document.id)
    assert status == Document.Status.PENDING
    assert unembedded == chunks - 4 and chunks == chunk_count

    documents.document_ingest(document_id=document.id)
    assert state(document.id)[0] == Document.Status.READY


def test_the_ingestion_lock_never_sends_the_document_text(document):
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        documents.document_ingest(document_id=document.id)

    assert state(document.id)[0] == Document.Status.READY
    assert not [query["sql"][:200] for query in queries.captured_queries if TEXT in query["sql"]]


def owner(acme) -> Reader:  # noqa: ANN001
    return reader_of(tenant=acme.tenant, user=acme.owner)  # owners may edit any document


def test_an_edit_back_to_the_same_text_still_supersedes_a_running_ingestion(acme, document):
    edited = []

    def edits_meanwhile() -> bool:
        if not edited:
            current = Document.objects.get(id=document.id)
            documents.document_update(reader=owner(acme), document=current, content="Something else entirely.")
            edited.append(documents.document_update(reader=owner(acme), document=current, content=TEXT))
        return False

    documents.document_ingest(document_id=document.id, should_stop=edits_meanwhile)

    assert edited[0].revision == document.revision + 2
    assert state(document.id)[0] == Document.Status.PENDING, "the older run marked the newer revision ready"
    documents.document_ingest(document_id=document.id)  # the edit's own run
    assert state(document.id)[0] == Document.Status.READY


def test_renaming_a_document_while_it_is_ingested_keeps_the_run_going(acme, document):
    def renamed_meanwhile() -> bool:
        current = Document.objects.get(id=document.id)
        documents.document_update(reader=owner(acme), document=current, title="Boilers (2026)")
        return False

    documents.document_ingest(document_id=document.id, should_stop=renamed_meanwhile)

    assert state(document.id)[0] == Document.Status.READY
