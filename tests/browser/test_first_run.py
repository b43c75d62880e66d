"""Issue 25 #24 in Chromium at 390 and 1280 px: the demo workspace's sample documents, and an empty
workspace's checklist of first steps, each ticked when done."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from config.demo import demo_documents_seed
from tests.browser.conftest import chat_over_sse, fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    """A committed tenant for this test alone, so it starts with no documents."""
    return committed(fresh_world, "Firsthour")


def test_an_empty_workspace_shows_a_checklist_ticked_as_each_step_is_done(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    log_in(page, base, own_world.owner.email)

    steps = page.locator("#first-steps li")
    expect(steps).to_have_count(3)
    upload, ask, invite = steps.nth(0), steps.nth(1), steps.nth(2)
    expect(upload).to_contain_text("Upload a document")
    expect(ask).to_contain_text("Ask a question")
    expect(invite).to_contain_text("Invite a teammate")
    expect(upload).not_to_have_class(re.compile(r"\bis-done\b"))
    expect(ask).not_to_have_class(re.compile(r"\bis-done\b"))
    expect(invite).to_have_class(re.compile(r"\bis-done\b"))  # the workspace has a member already
    shot(page, "first-steps")
    fits_width(page)

    page.fill("#title", "Opening hours")
    page.fill("#content", "The office opens at seven and the canteen at noon.")
    page.click("#upload button[type=submit]")
    expect(upload).to_have_class(re.compile(r"\bis-done\b"))  # without a reload
    expect(ask).not_to_have_class(re.compile(r"\bis-done\b"))

    chat_over_sse(asgi_server, own_world, "When does the canteen open?")
    page.reload()
    expect(page.locator("#first-steps")).to_have_count(0)  # every step done: the checklist goes


def test_the_demo_workspace_ships_sample_documents_to_search(sized_page, own_world, asgi_server):
    page = sized_page
    committed(demo_documents_seed, tenant=own_world.tenant, user=own_world.owner)
    log_in(page, asgi_server.host_url(own_world.tenant.subdomain), own_world.owner.email)

    items = page.locator(".doc-item")
    expect(items).to_have_count(3)
    for item in items.all():
        expect(item.locator(".doc-status")).to_have_text("Ready", timeout=60_000)
    page.fill("#query", "How many days of annual leave do I get?")
    page.click("#search button[type=submit]")
    expect(page.locator("#results .hit").first).to_contain_text("Employee handbook")
