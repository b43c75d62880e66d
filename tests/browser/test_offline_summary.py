"""Issue 25 #9 in Chromium at 390 and 1280 px: the offline summary claims no tokens that usage does not count."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import document_add, fresh_world, log_in
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    """A committed tenant for this test alone, so it starts with no documents."""
    return committed(fresh_world, "Firsthour")


def test_the_offline_summary_claims_no_tokens_that_usage_does_not_count(sized_page, own_world, asgi_server):
    page = sized_page
    document = document_add(
        asgi_server, own_world, "Quarterly report", "Revenue grew eleven percent. Costs fell. " * 40
    )
    base = asgi_server.host_url(own_world.tenant.subdomain)
    log_in(page, base, own_world.member.email)
    page.goto(f"{base}/documents/{document['id']}/")

    page.click("#summarise")

    expect(page.locator("#summary-text")).not_to_be_empty(timeout=30_000)
    note = page.locator("#summary-area")
    expect(note).to_contain_text("Offline summary")
    expect(note).not_to_contain_text(re.compile(r"\d[\d,]* tokens"))
    expect(note).to_contain_text("no tokens")
