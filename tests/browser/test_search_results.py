"""Issue 25 #8 in Chromium at 390 and 1280 px: search snippets are the matching sentences as plain text, the
count reads right, and ten results are ten documents."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import document_add, fits_width, fresh_world, log_in
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    """A committed tenant for this test alone, so it starts with no documents."""
    return committed(fresh_world, "Firsthour")


MARKDOWN_HANDBOOK = """# Office handbook

## Around the office

Welcome to the company. We were founded in a small garage by two engineers who liked building things.
Today we have three offices and more than two hundred colleagues. The reception desk is staffed from
eight until six, and visitors sign in on the tablet beside the door. Printers on every floor release a
job only when you **tap your badge on the reader**, so confidential pages never sit in the tray. Colour
printing needs a manager's approval. The kitchen is cleaned every evening.
"""


def test_search_snippets_show_the_matching_sentences_as_plain_text(sized_page, own_world, asgi_server):
    page = sized_page
    document_add(asgi_server, own_world, "Office handbook", MARKDOWN_HANDBOOK)
    document_add(asgi_server, own_world, "Canteen menu", "Monday: lentil soup. Tuesday: fish pie. Wednesday: risotto.")
    log_in(page, asgi_server.host_url(own_world.tenant.subdomain), own_world.member.email)

    page.fill("#query", "How do I get my print job out of the printer?")
    page.click("#search button[type=submit]")

    hits = page.locator("#results .hit")
    expect(hits).to_have_count(1)
    expect(page.locator("#search-results")).to_contain_text("1 document matches")
    snippet = hits.first.locator(".hit-passage").first
    expect(snippet).to_contain_text("tap your badge on the reader")
    expect(snippet).not_to_contain_text("founded in a small garage")  # not the passage's first characters
    text = snippet.inner_text()
    assert "**" not in text and "#" not in text, text
    fits_width(page)


PRINTING_FLOOR = (
    "Printing on floor {n}. The printers on floor {n} release a print job only when you tap your badge on the "
    "reader beside them, so confidential pages never wait in the tray. Colour printing on floor {n} needs a "
    "manager's approval, and the printer keeps a job for a day before it deletes it. "
)


def test_ten_search_results_are_ten_documents_each_with_its_best_passages(sized_page, own_world, asgi_server):
    page = sized_page
    for n in range(12):  # twelve relevant documents, each with several relevant passages
        document_add(asgi_server, own_world, f"Floor {n} printing guide", PRINTING_FLOOR.format(n=n) * 7)
    log_in(page, asgi_server.host_url(own_world.tenant.subdomain), own_world.member.email)

    page.fill("#query", "How do I release my print job at the printer?")
    page.click("#search button[type=submit]")

    expect(page.locator("#results .hit")).to_have_count(10)
    expect(page.locator("#search-results")).to_contain_text("10 documents match")
    titles = page.locator("#results .hit .doc-title").all_inner_texts()
    assert len(set(titles)) == 10, titles
