"""Issue 25 #3 in Chromium at 390 and 1280 px: a refused upload keeps what was typed (pasted text, title,
chosen file), and an upload that finishes leaves alone a file picked meanwhile."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import fits_width, fresh_world, log_in
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    """A committed tenant for this test alone, so it starts with no documents."""
    return committed(fresh_world, "Firsthour")


def _file_input_names(page: Page) -> list[str]:
    return page.evaluate("[...document.getElementById('file').files].map((file) => file.name)")


def test_a_refused_upload_keeps_the_pasted_text_the_title_and_the_file(sized_page, own_world, asgi_server, tmp_path):
    page = sized_page
    log_in(page, asgi_server.host_url(own_world.tenant.subdomain), own_world.member.email)

    page.fill("#content", "The office opens at seven and the canteen at noon.")
    page.click("#upload button[type=submit]")  # no title: refused

    expect(page.locator("#upload-result [role=alert]")).to_contain_text("title")
    expect(page.locator("#content")).to_have_value("The office opens at seven and the canteen at noon.")

    figures = tmp_path / "figures.csv"
    figures.write_text("quarter,revenue\nQ1,100\n")
    page.fill("#content", "")
    page.fill("#title", "Quarterly figures")
    page.set_input_files("#file", str(figures))
    page.click("#upload button[type=submit]")

    failed = page.locator('#upload-queue .upload-item[data-name="figures.csv"]')
    expect(failed).to_have_class(re.compile(r"\bis-failed\b"))
    expect(failed.locator(".upload-state")).to_contain_text("not supported")
    expect(page.locator("#title")).to_have_value("Quarterly figures")
    assert _file_input_names(page) == ["figures.csv"]
    fits_width(page)


def test_a_finishing_upload_leaves_a_file_picked_meanwhile(sized_page, own_world, asgi_server, tmp_path):
    page = sized_page
    log_in(page, asgi_server.host_url(own_world.tenant.subdomain), own_world.member.email)
    held: list[Route] = []
    page.route("**/documents/upload/", lambda route: held.append(route))  # the first upload waits until we let it go
    first, second = tmp_path / "first-notes.txt", tmp_path / "second-notes.txt"
    first.write_text("The first notes: the keeper logs the weather at dawn.")
    second.write_text("The second notes: the lamp is lit at dusk.")

    page.set_input_files("#file", str(first))
    page.click("#upload button[type=submit]")
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)  # lets Playwright deliver the intercepted request
    assert held, "the upload never left the page"
    page.set_input_files("#file", str(second))
    page.fill("#title", "Second notes")
    held[0].continue_()

    done = page.locator('#upload-queue .upload-item[data-name="first-notes.txt"]')
    expect(done.locator(".upload-state")).to_have_text("Added; indexing…", timeout=30_000)
    expect(page.locator(".doc-item", has_text="first-notes")).to_be_visible()
    assert _file_input_names(page) == ["second-notes.txt"]
    expect(page.locator("#title")).to_have_value("Second notes")
