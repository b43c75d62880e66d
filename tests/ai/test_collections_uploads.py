"""Uploads people expect: the title a file carries when none is given, and replacing a document
with a new version (indexed again, the earlier one kept, search reading only the current one)."""

from __future__ import annotations

import io

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from ai.ingestion.extraction import extract_title
from tests.uploads import docx_bytes, pdf_bytes, upload

pytestmark = pytest.mark.django_db


def _docx_titled(title: str) -> bytes:
    document = docx.Document(io.BytesIO(docx_bytes("Heading of the text", ["The body says hello."])))
    document.core_properties.title = title
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _pdf_titled(title: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_bytes(["The body says hello."]))))
    writer.add_metadata({"/Title": title})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


HTML = b"<html><head><title> Quarterly\n report </title></head><body><p>The body says hello.</p></body></html>"


@pytest.mark.parametrize(
    ("name", "data", "title"),
    [
        ("a.docx", _docx_titled("Board pack 2026"), "Board pack 2026"),
        ("a.html", HTML, "Quarterly report"),
        ("a.pdf", _pdf_titled("Annual accounts"), "Annual accounts"),
        ("a.txt", b"plain text has no title", ""),
        ("a.docx", docx_bytes("Heading", ["no core title"]), ""),
        ("a.pdf", b"%PDF-1.4 damaged", ""),
    ],
)
def test_the_title_a_file_carries_is_read(name, data, title):
    assert extract_title(filename=name, content_type=None, data=data) == title


def test_an_upload_without_a_title_takes_the_files_own(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        untitled = client.post("/api/documents/", {"file": upload("pack.docx", _docx_titled("Board pack"))})
        titled = client.post(
            "/api/documents/", {"file": upload("pack.docx", _docx_titled("Board pack")), "title": "Mine"}
        )
        bare = client.post("/api/documents/", {"file": upload("notes.html", b"<p>No title here at all.</p>")})

    assert client.get(f"/api/documents/{untitled.json()['id']}/").json()["title"] == "Board pack"
    assert client.get(f"/api/documents/{titled.json()['id']}/").json()["title"] == "Mine"
    assert client.get(f"/api/documents/{bare.json()['id']}/").json()["title"] == "notes"


def _search_texts(client, query: str) -> str:  # noqa: ANN001
    return str(client.post("/api/search/", {"query": query, "max_distance": 2.0}, format="json").json())


def test_replacing_a_document_keeps_the_old_version_and_indexes_the_new(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        document = client.post(
            "/api/documents/", {"title": "Leave policy", "content": "Staff get twenty days of leave."}, format="json"
        ).json()
    assert "twenty days" in _search_texts(client, "How many days of leave?")

    with ingest():
        replaced = client.post(
            f"/api/documents/{document['id']}/replace/", {"content": "Staff get thirty days of leave."}, format="json"
        )

    assert replaced.status_code == 202 and replaced.json()["version"] == 2
    current = client.get(f"/api/documents/{document['id']}/").json()
    assert current["status"] == "ready" and current["content"] == "Staff get thirty days of leave."
    assert current["title"] == "Leave policy"
    versions = client.get(f"/api/documents/{document['id']}/versions/").json()
    assert [(v["number"], v["title"], v["replaced_by"]) for v in versions] == [(1, "Leave policy", acme.member.email)]
    found = _search_texts(client, "How many days of leave?")
    assert "thirty days" in found and "twenty days" not in found


def test_a_new_version_from_a_file_takes_its_title_unless_one_is_given(acme, ingest):
    client = acme.client(acme.member_token)
    with ingest():
        document = client.post("/api/documents/", {"title": "Pack", "content": "Old text."}, format="json").json()
        client.post(f"/api/documents/{document['id']}/replace/", {"file": upload("v2.docx", _docx_titled("Pack v2"))})

    current = client.get(f"/api/documents/{document['id']}/").json()
    assert current["title"] == "Pack v2" and "The body says hello." in current["content"]
    assert current["version"] == 2 and current["source_name"] == "v2.docx"


def test_only_the_author_or_an_admin_replaces_a_document(acme, new_member, ingest):
    _, other = new_member(acme)
    with ingest():
        document = (
            acme.client(acme.member_token)
            .post("/api/documents/", {"title": "Mine", "content": "Text."}, format="json")
            .json()
        )

    refused = acme.client(other).post(f"/api/documents/{document['id']}/replace/", {"content": "x"}, format="json")
    with ingest():
        allowed = acme.client(acme.owner_token).post(
            f"/api/documents/{document['id']}/replace/", {"content": "New text."}, format="json"
        )

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_document_owner"
    assert allowed.status_code == 202


def test_the_document_page_replaces_and_lists_earlier_versions(acme, ingest):
    session = acme.session_client(acme.member)
    with ingest():
        document = (
            acme.client(acme.member_token)
            .post("/api/documents/", {"title": "Menu", "content": "Soup on Monday."}, format="json")
            .json()
        )
        response = session.post(f"/documents/{document['id']}/replace/", {"content": "Fish on Monday."})

    assert response.status_code == 302
    page = session.get(f"/documents/{document['id']}/").content.decode()
    assert "Fish on Monday." in page and 'id="versions"' in page and "Version 1: “Menu”" in page
