"""Documents through the API: uploads in every format, bad uploads, ingestion states, edits and deletes."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from ai.models import Chunk, Document, DocumentUpload
from tests.ai.factories import DocumentFactory
from tests.fakes.voyage_server import DEFAULT_API_KEY, FakeVoyage
from tests.uploads import docx_bomb, docx_bytes, pdf_bytes, upload

LOCAL_MODEL = "local/sentence-transformers/all-MiniLM-L6-v2"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

HTML_PAGE = b"""<!doctype html>
<html><head><title>ignored head</title><style>p { color: red }</style></head>
<body><nav>Home | About</nav>
<h1>Garden notes</h1>
<p>Tomatoes need full sun and regular watering.</p>
<script>alert("never indexed")</script>
<p>Prune the basil so it grows bushy.</p>
</body></html>"""


def document_count(world) -> int:  # noqa: ANN001
    with tenant_context(world.tenant):
        return Document.objects.count()


def chunks_of(world, document_id: int) -> list[Chunk]:  # noqa: ANN001
    with tenant_context(world.tenant):
        return list(Chunk.objects.filter(document_id=document_id).order_by("position"))


@pytest.fixture
def voyage(settings):  # noqa: ANN001
    """The hosted embedding backend, through the voyageai SDK, against the wire-level fake."""
    with FakeVoyage() as fake:
        settings.EMBEDDING_BACKEND = "voyage"
        settings.EMBEDDING_MODEL = "voyage-3.5-lite"
        settings.VOYAGE_API_KEY = DEFAULT_API_KEY
        settings.VOYAGE_BASE_URL = fake.base_url
        yield fake


# Creating


@pytest.mark.parametrize(
    ("name", "content_type", "data", "expected", "left_out"),
    [
        (
            "notes.txt",
            "text/plain",
            "Meeting moved to Thursday.\r\nBring the café receipts.".encode(),
            "Meeting moved to Thursday.\nBring the café receipts.",
            "",
        ),
        (
            "readme.md",
            "text/markdown",
            b"# Release plan\n\n- ship the beta\n- collect feedback\n",
            "# Release plan\n\n- ship the beta\n- collect feedback\n",  # typed text is kept as it came
            "",
        ),
        (
            "garden.html",
            "text/html",
            HTML_PAGE,
            "Garden notes\n\nTomatoes need full sun and regular watering.\n\nPrune the basil so it grows bushy.",
            "never indexed",
        ),
        (
            "invoice.pdf",
            "application/pdf",
            pdf_bytes(["Invoice 2024-117", "Total due: 1,250.00 EUR by 31 March."]),
            "Invoice 2024-117\nTotal due: 1,250.00 EUR by 31 March.",
            "",
        ),
        (
            "contract.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            docx_bytes(
                "Supplier agreement", ["The supplier delivers within thirty days.", "Payment is due on receipt."]
            ),
            "Supplier agreement\n\nThe supplier delivers within thirty days.\n\nPayment is due on receipt.",
            "",
        ),
    ],
    ids=["txt", "md", "html", "pdf", "docx"],
)
def test_each_upload_format_is_stored_as_its_text(acme, ingest, name, content_type, data, expected, left_out):
    client = acme.client(acme.member_token)

    with ingest():
        response = client.post("/api/documents/", {"file": upload(name, data, content_type)}, format="multipart")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["content"]) == ("pending", "")  # read by the ingestion job, not the request
    assert body["title"] == name.rsplit(".", 1)[0]
    assert body["source_name"] == name
    assert body["content_type"] == content_type
    assert body["created_by"] == acme.member.email
    stored = client.get(f"/api/documents/{body['id']}/").json()
    assert stored["status"] == "ready"
    assert stored["content"] == expected
    if left_out:
        assert left_out not in stored["content"]
    with tenant_context(acme.tenant):
        assert not DocumentUpload.objects.filter(document_id=body["id"]).exists()  # the bytes are gone


def test_an_upload_keeps_the_title_it_was_given(acme):
    response = acme.client(acme.member_token).post(
        "/api/documents/",
        {"title": "Q3 minutes", "file": upload("m.txt", b"Minutes of the meeting.", "text/plain")},
        format="multipart",
    )

    assert response.status_code == 201, response.content
    assert response.json()["title"] == "Q3 minutes"


def test_a_json_document_is_created_pending_and_becomes_ready(acme, ingest):
    client = acme.client(acme.member_token)

    with ingest():
        response = client.post(
            "/api/documents/", {"title": "Handbook", "content": "Holidays are booked in the HR portal."}, format="json"
        )

    assert response.status_code == 201, response.content
    created = response.json()
    assert created["status"] == "pending"
    assert created["chunk_count"] == 0
    assert created["content"] == "Holidays are booked in the HR portal."
    shown = client.get(f"/api/documents/{created['id']}/").json()
    assert shown["status"] == "ready"
    assert shown["error"] == ""
    assert shown["chunk_count"] == 1


def test_without_the_background_job_a_document_stays_pending(acme):
    client = acme.client(acme.member_token)

    created = client.post(
        "/api/documents/", {"title": "Later", "content": "Indexed once the worker runs."}, format="json"
    ).json()

    assert client.get(f"/api/documents/{created['id']}/").json()["status"] == "pending"
    assert chunks_of(acme, created["id"]) == []


# Bad uploads


def corrupt_docx() -> bytes:
    good = docx_bytes("Title", ["Body"])
    return good[:200] + b"\x00" * 64 + good[264:]


@pytest.mark.parametrize(
    ("name", "content_type", "data", "status", "code"),
    [
        ("setup.exe", "application/octet-stream", b"MZ\x90\x00binary", 415, "unsupported_media_type"),
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n....", 415, "unsupported_media_type"),
        ("noextension", "image/gif", b"GIF89a", 415, "unsupported_media_type"),
        ("not-really.pdf", "application/pdf", b"Just some words pretending to be a PDF.", 400, "unreadable_file"),
        ("binary.txt", "text/plain", b"\x7fELF\x02\x01\x01\x00\x00\x00", 400, "unreadable_file"),
        ("empty.txt", "text/plain", b"", 400, "empty_document"),
        ("not-a-zip.docx", DOCX, b"Just some text, not a zip at all", 400, "unreadable_file"),
        ("bomb.docx", DOCX, docx_bomb(40), 413, "payload_too_large"),
    ],
    ids=["exe", "png", "gif-no-extension", "text-named-pdf", "binary-txt", "empty", "not-a-zip", "docx-bomb"],
)
def test_uploads_that_cheap_checks_refuse_get_the_right_4xx_at_once_and_save_nothing(
    acme, name, content_type, data, status, code
):
    before = document_count(acme)

    response = acme.client(acme.member_token).post(
        "/api/documents/", {"file": upload(name, data, content_type)}, format="multipart"
    )

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert document_count(acme) == before


@pytest.mark.parametrize(
    ("name", "content_type", "data", "error"),
    [
        (
            "broken.pdf",
            "application/pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ntrailer garbage",
            "Could not read 'broken.pdf': the PDF is damaged or encrypted.",
        ),
        ("broken.docx", DOCX, corrupt_docx(), "Could not read 'broken.docx': the Word document is damaged."),
        ("blank.md", "text/markdown", b"  \n\n\t \r\n", "'blank.md' contains no text to index."),
        (
            "only-script.html",
            "text/html",
            b"<html><script>var x = 1;</script></html>",
            "'only-script.html' contains no text to index.",
        ),
        ("blank.pdf", "application/pdf", pdf_bytes([]), "'blank.pdf' contains no text to index."),
    ],
    ids=["corrupt-pdf", "corrupt-docx", "whitespace", "script-only-html", "blank-pdf"],
)
def test_uploads_that_cannot_be_read_are_accepted_then_fail_with_a_readable_error(
    acme, ingest, name, content_type, data, error
):
    client = acme.client(acme.member_token)

    with ingest():
        response = client.post("/api/documents/", {"file": upload(name, data, content_type)}, format="multipart")

    assert response.status_code == 201, response.content
    shown = client.get(f"/api/documents/{response.json()['id']}/").json()
    assert (shown["status"], shown["error"]) == ("failed", error)
    assert chunks_of(acme, shown["id"]) == []


def test_an_upload_over_the_size_limit_is_a_413_and_saves_nothing(acme, settings):
    settings.DOCUMENT_MAX_UPLOAD_BYTES = 1000
    before = document_count(acme)
    client = acme.client(acme.member_token)

    too_big = client.post(
        "/api/documents/", {"file": upload("big.txt", b"word " * 201, "text/plain")}, format="multipart"
    )
    at_limit = client.post(
        "/api/documents/", {"file": upload("ok.txt", b"word " * 200, "text/plain")}, format="multipart"
    )

    assert too_big.status_code == 413, too_big.content
    assert too_big.json()["error"]["code"] == "payload_too_large"
    assert "1,000 bytes" in too_big.json()["error"]["message"]
    assert at_limit.status_code == 201, at_limit.content
    assert document_count(acme) == before + 1


def test_json_content_over_the_character_limit_is_a_413(acme, settings):
    settings.DOCUMENT_MAX_CHARS = 50
    before = document_count(acme)

    response = acme.client(acme.member_token).post(
        "/api/documents/", {"title": "Long", "content": "x" * 51}, format="json"
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert document_count(acme) == before


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"title": "No content"}, {"content"}),
        ({"content": "No title"}, {"title"}),
        ({"title": " ", "content": " \n"}, {"title", "content"}),
    ],
)
def test_a_json_document_needs_a_title_and_content(acme, payload, fields):
    before = document_count(acme)

    response = acme.client(acme.member_token).post("/api/documents/", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert set(response.json()["error"]["fields"]) == fields
    assert document_count(acme) == before


# Ingestion


def test_ingestion_stores_normalised_embeddings_for_every_chunk(acme, ingest, settings):
    settings.CHUNK_TOKENS = 40
    settings.CHUNK_OVERLAP_TOKENS = 8
    content = "\n\n".join(
        f"Section {i}. The warehouse in city number {i} ships parcels every weekday morning and closes at six."
        for i in range(12)
    )
    client = acme.client(acme.member_token)

    with ingest():
        created = client.post("/api/documents/", {"title": "Logistics", "content": content}, format="json").json()

    shown = client.get(f"/api/documents/{created['id']}/").json()
    chunks = chunks_of(acme, created["id"])
    assert shown["status"] == "ready"
    assert shown["chunk_count"] == len(chunks) > 3
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    assert all(chunk.embedding_model == LOCAL_MODEL for chunk in chunks)
    vectors = np.array([chunk.embedding for chunk in chunks])
    assert vectors.shape == (len(chunks), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert all("Section 11" not in chunk.text for chunk in chunks[:-1]) and "Section 11" in chunks[-1].text
    # Neighbouring chunks overlap, so a sentence cut at a boundary is whole in one of them.
    assert any(a.text.split()[-1] in b.text.split()[:8] for a, b in zip(chunks, chunks[1:], strict=False))


def test_embed_documents_finishes_a_document_whose_embedding_failed(acme, ingest, voyage):
    from django.core.management import call_command

    voyage.fail_next = [500]
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Plans", "content": "The roadmap for next year."}, format="json"
        )
    assert client.get(f"/api/documents/{created.json()['id']}/").json()["status"] == "failed"

    call_command("embed_documents", schema=acme.tenant.schema_name, verbosity=0)

    shown = client.get(f"/api/documents/{created.json()['id']}/").json()
    assert (shown["status"], shown["error"]) == ("ready", "")
    assert all(chunk.embedding is not None for chunk in chunks_of(acme, shown["id"]))


def test_a_failing_embedding_provider_marks_the_document_failed_with_the_error(acme, ingest, voyage):
    voyage.fail_next = [500]
    client = acme.client(acme.member_token)

    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Plans", "content": "The roadmap for next year."}, format="json"
        )

    assert created.status_code == 201
    shown = client.get(f"/api/documents/{created.json()['id']}/").json()
    assert shown["status"] == "failed"
    assert shown["error"] == "The embedding provider returned an error (HTTP 500)."
    # The chunks are kept, unembedded, so embed_documents can finish once the provider is back.
    assert shown["chunk_count"] == 1
    assert [chunk.embedding for chunk in chunks_of(acme, shown["id"])] == [None]
    listed = client.get("/api/documents/").json()["results"]
    assert {"id": shown["id"], "status": "failed", "error": shown["error"]}.items() <= next(
        d for d in listed if d["id"] == shown["id"]
    ).items()


def test_the_hosted_embedding_backend_ingests_through_its_sdk(acme, ingest, voyage):
    client = acme.client(acme.member_token)

    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Plans", "content": "The roadmap for next year."}, format="json"
        ).json()

    assert client.get(f"/api/documents/{created['id']}/").json()["status"] == "ready"
    (request,) = voyage.requests
    assert request.body["input"] == ["The roadmap for next year."]
    assert request.body["input_type"] == "document"
    assert request.body["output_dimension"] == 512
    (chunk,) = chunks_of(acme, created["id"])
    assert chunk.embedding_model == "voyage/voyage-3.5-lite"
    assert len(chunk.embedding) == 384
    assert np.linalg.norm(chunk.embedding) == pytest.approx(1.0, abs=1e-5)


def test_a_failed_document_recovers_when_its_content_is_edited(acme, ingest, voyage):
    voyage.fail_next = [500]
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post("/api/documents/", {"title": "Plans", "content": "Draft."}, format="json").json()
    assert client.get(f"/api/documents/{created['id']}/").json()["status"] == "failed"

    with ingest():
        client.patch(f"/api/documents/{created['id']}/", {"content": "Final roadmap."}, format="json")

    shown = client.get(f"/api/documents/{created['id']}/").json()
    assert (shown["status"], shown["error"], shown["chunk_count"]) == ("ready", "", 1)


def test_editing_the_content_reingests_the_document(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Menu", "content": "Monday: lentil soup."}, format="json"
        ).json()
    old_chunks = chunks_of(acme, created["id"])

    with ingest():
        edited = client.patch(
            f"/api/documents/{created['id']}/", {"content": "Monday: grilled fish with potatoes."}, format="json"
        )

    assert edited.status_code == 200, edited.content
    assert edited.json()["status"] == "pending"
    new_chunks = chunks_of(acme, created["id"])
    assert [chunk.text for chunk in new_chunks] == ["Monday: grilled fish with potatoes."]
    assert not {c.id for c in old_chunks} & {c.id for c in new_chunks}
    assert not np.allclose(old_chunks[0].embedding, new_chunks[0].embedding)
    assert client.get(f"/api/documents/{created['id']}/").json()["status"] == "ready"
    hits = client.post("/api/search/", {"query": "seafood dinner"}, format="json").json()["results"]
    assert hits[0]["text"] == "Monday: grilled fish with potatoes."


def test_renaming_a_document_keeps_its_chunks(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Menu", "content": "Monday: lentil soup."}, format="json"
        ).json()
    before = [(c.id, c.text) for c in chunks_of(acme, created["id"])]

    with ingest():
        renamed = client.put(
            f"/api/documents/{created['id']}/",
            {"title": "Canteen menu", "content": "Monday: lentil soup."},
            format="json",
        )

    assert renamed.status_code == 200, renamed.content
    assert renamed.json()["title"] == "Canteen menu"
    assert renamed.json()["status"] == "ready"
    assert [(c.id, c.text) for c in chunks_of(acme, created["id"])] == before


def test_editing_to_blank_content_is_a_400_and_changes_nothing(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Menu", "content": "Monday: lentil soup."}, format="json"
        ).json()

    response = client.patch(f"/api/documents/{created['id']}/", {"content": "   "}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] in {"invalid", "empty_document"}
    shown = client.get(f"/api/documents/{created['id']}/").json()
    assert (shown["content"], shown["status"]) == ("Monday: lentil soup.", "ready")


def test_an_update_that_changes_nothing_is_refused(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post("/api/documents/", {"title": "Menu", "content": "Tuesday: stew."}, format="json").json()

    empty_json = client.patch(f"/api/documents/{created['id']}/", {}, format="json")
    empty_form = client.patch(f"/api/documents/{created['id']}/", {}, format="multipart")

    assert (empty_json.status_code, empty_form.status_code) == (400, 400)
    assert "title" in empty_json.json()["error"]["message"]


def test_deleting_a_document_removes_its_chunks_from_search(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        created = client.post(
            "/api/documents/", {"title": "Parking", "content": "Staff park behind building B."}, format="json"
        ).json()
    assert chunks_of(acme, created["id"])

    assert client.delete(f"/api/documents/{created['id']}/").status_code == 204

    assert chunks_of(acme, created["id"]) == []
    assert client.get(f"/api/documents/{created['id']}/").status_code == 404
    assert (
        client.post("/api/search/", {"query": "where do employees leave their cars"}, format="json").json()["results"]
        == []
    )


# Listing


def test_the_document_list_is_paginated_newest_first_without_content(acme):
    with tenant_context(acme.tenant):
        for i in range(3):
            DocumentFactory(title=f"Doc {i}", created_by=acme.owner)

    body = acme.client(acme.member_token).get("/api/documents/").json()

    assert body["count"] == 3
    assert [d["title"] for d in body["results"]] == ["Doc 2", "Doc 1", "Doc 0"]
    assert "content" not in body["results"][0]
    assert body["results"][0]["created_by"] == acme.owner.email


def test_the_document_list_runs_a_constant_number_of_queries(acme, django_assert_num_queries):
    client = acme.client(acme.member_token)
    with tenant_context(acme.tenant):
        DocumentFactory(created_by=acme.owner)
    with CaptureQueriesContext(connection) as one:
        assert client.get("/api/documents/").json()["count"] == 1
    one_document = len(one)  # read now: the next request empties the connection's query log
    with tenant_context(acme.tenant):
        for user in (acme.owner, acme.member, None) * 6:
            DocumentFactory(created_by=user)

    with django_assert_num_queries(one_document):
        assert client.get("/api/documents/").json()["count"] == 19


def test_a_file_the_parser_cannot_afford_is_accepted_and_fails_in_the_job_not_the_worker(acme, ingest, settings):
    # Archive checks off, so only the child's hard memory limit stands between the bomb and us.
    settings.DOCUMENT_MAX_UNPACKED_BYTES = 10**12
    settings.DOCUMENT_MAX_COMPRESSION_RATIO = 10**9
    settings.DOCUMENT_MAX_CHARS = 10**9
    settings.DOCUMENT_PARSE_MEMORY_MB = 200
    client = acme.client(acme.member_token)

    with ingest():
        response = client.post(
            "/api/documents/", {"file": upload("bomb.docx", docx_bomb(20), DOCX)}, format="multipart"
        )

    assert response.status_code == 201, response.content
    shown = client.get(f"/api/documents/{response.json()['id']}/").json()
    assert shown["status"] == "failed"
    assert shown["error"] == "'bomb.docx' needs more memory to read than 200 MB."
