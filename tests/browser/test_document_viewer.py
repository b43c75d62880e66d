"""Issue 25 #14 in Chromium at 390 and 1280 px: the document viewer reads like a document (a readable title,
the type in words, PDF lines as paragraphs, passages a page at a time) and its indexing notice goes."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from ai.models import Chunk, Document
from tests.browser.conftest import api, fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.processes import committed
from tests.uploads import pdf_bytes


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    """A committed tenant for this test alone, so it starts with no documents."""
    return committed(fresh_world, "Firsthour")


def _pdf_handbook() -> bytes:
    # Lines broken where the page ran out of width, as a PDF keeps them, over several pages.
    printing = [
        "Printing. Printers on every floor release a job only when you tap your",
        "badge on the reader, so confidential pages never sit in the tray. Colour",
        "printing needs a manager's approval and a reason written on the form.",
    ]

    def section(name: str) -> list[str]:
        return [
            f"Section {name}. Each team keeps its own shelf of reference books, returned",
            "by Friday so that the library can count them, and the kitchen rota is posted",
            "every Monday morning next to the kettle, where everyone sees it early.",
        ]

    first = printing + [line for n in range(10) for line in section(f"0.{n}")]
    return pdf_bytes(first, *([line for n in range(12) for line in section(f"{page}.{n}")] for page in range(1, 5)))


def test_the_document_viewer_reads_like_a_document(sized_page, own_world, asgi_server, tmp_path):
    page = sized_page
    pdf = tmp_path / "employee_handbook-2024.pdf"
    pdf.write_bytes(_pdf_handbook())
    with pdf.open("rb") as file:
        files = {"file": (pdf.name, file, "application/pdf")}
        document = api(asgi_server, own_world, "POST", "/api/documents/", files=files).json()
    base = asgi_server.host_url(own_world.tenant.subdomain)
    log_in(page, base, own_world.member.email)
    page.goto(f"{base}/documents/{document['id']}/")

    expect(page.get_by_role("heading", level=1)).to_have_text("Employee handbook 2024")
    facts = page.locator("#document-facts")
    expect(facts).to_contain_text("PDF")
    expect(facts).not_to_contain_text("application/pdf")
    text = page.evaluate("document.getElementById('document-text').textContent")
    assert "tap your badge on the reader" in text, text[:300]  # one paragraph, not the PDF's lines
    assert "approval and a reason" in text

    passages = page.locator(".passages .passage")
    expect(passages).to_have_count(10)
    expect(page.locator("#passages-heading + p")).to_contain_text("Showing 1–10 of")
    shot(page, "document-viewer")
    page.click("#passages-later")
    expect(page.locator(".passages .passage").first.locator(".passage-head")).to_contain_text("Passage 11")
    expect(page.locator(".passages .passage")).not_to_have_count(0)
    fits_width(page)


def test_the_indexing_notice_goes_when_the_document_is_ready(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)

    def pending_document() -> int:
        with tenant_context(own_world.tenant):
            return Document.objects.create(title="Quarterly report", content="Revenue grew by a tenth.").id

    def finish(document_id: int) -> None:
        with tenant_context(own_world.tenant):
            document = Document.objects.get(id=document_id)
            Chunk.objects.create(
                document=document,
                collection_id=document.collection_id,
                position=0,
                text="Revenue grew by a tenth.",
                token_count=6,
            )
            Document.objects.filter(id=document_id).update(status=Document.Status.READY, chunk_count=1)

    document_id = committed(pending_document)
    log_in(page, base, own_world.member.email)
    page.goto(f"{base}/documents/{document_id}/")
    expect(page.locator("main")).to_contain_text("being indexed")
    page.evaluate("window.notReloaded = true")

    committed(finish, document_id)

    expect(page.locator("#document-facts .doc-status")).to_have_text("Ready to search", timeout=10_000)
    expect(page.locator("main")).not_to_contain_text("being indexed")
    expect(page.locator(".passages .passage")).to_contain_text("Revenue grew by a tenth.")
    assert page.evaluate("window.notReloaded === true")
