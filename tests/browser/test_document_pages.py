"""Documents in the browser, at 390 px and 1280 px: empty state, upload with progress, the
ingestion state changing without a reload, search by meaning with relevance, the document page
with the passage a hit points at highlighted, summarise, and delete after a confirmation."""

from __future__ import annotations

import re

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from ai.models import Document
from tests.browser.conftest import api, document_add, fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.processes import committed

PASSWORDS = (
    "Passwords. Passwords for company systems are at least fourteen characters long and are rotated every ninety "
    "days. Keep them in the approved password manager and never reuse one across services. "
) * 3
PRINTING = (
    "Printing. Printers on every floor release a job only when you tap your badge on the reader, so confidential "
    "pages never sit in the tray. Colour printing needs a manager's approval. "
) * 3
TRAVEL = (
    "Travel. Flights and hotels are booked through the travel desk at least two weeks ahead where possible; "
    "economy class is the rule for flights under six hours. "
) * 3
HANDBOOK = f"{PASSWORDS}\n\n{PRINTING}\n\n{TRAVEL}"


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    """A committed tenant for this test alone, so it starts with no documents."""
    return committed(fresh_world, "Docs")


def test_a_new_workspace_says_how_to_start_and_an_upload_shows_progress(sized_page, own_world, asgi_server, tmp_path):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    log_in(page, base, own_world.member.email)
    expect(page.locator("#documents-empty")).to_contain_text("No documents yet")
    shot(page, "documents-empty")
    notes = tmp_path / "office-guide.txt"
    notes.write_text(
        "\n\n".join(f"Section {n}. The office opens at seven and the canteen at noon." for n in range(400))
    )

    page.set_input_files("#file", str(notes))
    page.click("#upload button[type=submit]")

    # A file goes in a request of its own, with a progress bar of its own in the upload queue.
    queued = page.locator('#upload-queue .upload-item[data-name="office-guide.txt"]')
    expect(queued.locator(".upload-state")).to_have_text("Added; indexing…", timeout=60_000)
    expect(queued.locator("progress")).to_have_attribute("value", "100")
    item = page.locator(".doc-item", has_text="office-guide")
    expect(item.locator(".doc-status")).to_have_text("Ready", timeout=60_000)
    expect(item).to_contain_text("passages")
    assert page.evaluate("document.getElementById('file').value") == "", "the form is emptied after an upload"
    fits_width(page)


def test_the_ingestion_state_changes_on_the_page_without_a_reload(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)

    def pending_document() -> int:
        with tenant_context(own_world.tenant):
            return Document.objects.create(title="Quarterly report", content="Revenue grew.").id

    def finish(document_id: int) -> None:
        with tenant_context(own_world.tenant):
            Document.objects.filter(id=document_id).update(status=Document.Status.READY, chunk_count=1)

    document_id = committed(pending_document)
    log_in(page, base, own_world.member.email)
    item = page.locator(f'.doc-item[data-id="{document_id}"]')
    expect(item.locator(".doc-status")).to_contain_text("Indexing")
    page.evaluate("window.notReloaded = true")

    committed(finish, document_id)

    expect(item.locator(".doc-status")).to_have_text("Ready", timeout=10_000)
    assert page.evaluate("window.notReloaded === true")


def test_a_search_hit_opens_its_document_at_the_passage_highlighted(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    # The member adds the handbook: members delete only the documents they added.
    document = api(
        asgi_server,
        own_world,
        "POST",
        "/api/documents/",
        as_member=True,
        json={"title": "Staff handbook", "content": HANDBOOK},
    ).json()
    document_add(asgi_server, own_world, "Canteen menu", "Monday: lentil soup. Tuesday: fish pie. Wednesday: risotto.")
    log_in(page, base, own_world.member.email)

    page.fill("#query", "How do I get my print job out of the printer?")
    page.click("#search button[type=submit]")

    hits = page.locator("#results .hit")
    expect(hits).to_have_count(1)  # the canteen menu is not relevant, however few hits there are
    expect(hits.first).to_contain_text("Staff handbook")
    expect(hits.first.locator(".relevance")).to_contain_text("match")
    expect(page).to_have_url(re.compile(r"/\?q=How(\+|%20)do"))  # the search has an address to share
    shot(page, "search")
    hits.first.locator(".hit-passage", has_text="badge on the reader").first.click()

    expect(page.get_by_role("heading", name="Staff handbook", level=1)).to_be_visible()
    assert page.url.startswith(f"{base}/documents/{document['id']}/?passage="), page.url
    highlight = page.locator("mark#highlight")
    expect(highlight).to_contain_text("tap your badge on the reader")
    expect(highlight).not_to_contain_text("fourteen characters")
    expect(highlight).to_be_in_viewport()
    expect(page.locator(".passage.is-highlighted")).to_contain_text("badge on the reader")
    fits_width(page)
    shot(page, "document-highlight", full_page=False)

    page.click("#summarise")
    expect(page.locator("#summary-text")).not_to_be_empty(timeout=30_000)
    expect(page.locator("#summary-area")).to_contain_text("Offline summary")

    page.click("#delete-document")
    expect(page.get_by_role("heading", name="Delete “Staff handbook”?")).to_be_visible()
    shot(page, "document-delete")
    page.click("#confirm-delete")
    expect(page.locator(".flash")).to_contain_text("Deleted “Staff handbook”")
    expect(page.locator(".doc-item", has_text="Staff handbook")).to_have_count(0)


def test_a_search_with_nothing_relevant_says_so(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    document_add(asgi_server, own_world, "Staff handbook", HANDBOOK)
    log_in(page, base, own_world.member.email)

    page.fill("#query", "Who won the football world cup in 1966?")
    page.keyboard.press("Enter")

    expect(page.locator("#no-results")).to_contain_text("Nothing relevant found")
    fits_width(page)
