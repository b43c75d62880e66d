"""Every page at 390 px and at 1280 px: nothing wider than the window, the same navigation on
every workspace page, a favicon, and no inline script, handler or style in what the server sends
(the Content-Security-Policy forbids them)."""

from __future__ import annotations

import re

import httpx
import pytest
from bs4 import BeautifulSoup
from playwright.sync_api import Page, expect

from tenants.models import Tenant
from tests.browser.conftest import chat_over_sse, document_add, fits_width, fresh_world, log_in, shot
from tests.conftest import World

HANDBOOK = (
    "Security handbook\n\nPasswords for company systems are rotated every ninety days and kept in the approved "
    "password manager.\n\nLaptops are encrypted and lock themselves after five minutes without input."
)


@pytest.fixture(scope="module")
def pending(django_db_setup, django_db_blocker) -> World:  # noqa: ANN001
    with django_db_blocker.unblock():
        world = fresh_world("Pendant")
        Tenant.objects.filter(pk=world.tenant.pk).update(status=Tenant.Status.PENDING_PAYMENT)
    return world


def server_html_is_csp_safe(html: str, url: str) -> None:
    soup = BeautifulSoup(html, "html.parser")
    for script in soup.find_all("script"):
        assert script.get("src") or script.get("type") == "application/json", f"inline script on {url}"
    for tag in soup.find_all(True):
        assert "style" not in tag.attrs, f"style attribute on <{tag.name}> of {url}"
        handlers = [name for name in tag.attrs if re.fullmatch(r"on[a-z]+", name)]
        assert not handlers, f"inline handler {handlers} on <{tag.name}> of {url}"


def visit(page: Page, url: str, name: str, *, status: int = 200) -> None:
    """Open ``url``; check the status, the raw HTML, the width; keep a screenshot."""
    response = page.goto(url)
    assert response is not None and response.status == status, (url, response and response.status)
    server_html_is_csp_safe(response.text(), url)
    page.wait_for_load_state("load")
    fits_width(page)
    shot(page, name, full_page="#" not in url)


def workspace_nav(page: Page, current: str | None) -> None:
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Documents", "Chat", "Usage", "Billing"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    if current:
        expect(nav.locator("[aria-current=page]")).to_have_text(current)
    page.locator("details.menu summary").first.click()
    expect(page.locator(".menu-panel #logout")).to_be_visible()
    page.keyboard.press("Escape")


def test_every_page_fits_the_window_and_shares_the_navigation(
    sized_page, world, pending, live_worlds, asgi_server, settings
):
    page = sized_page
    base = asgi_server.host_url(world.tenant.subdomain)
    public = f"http://localhost:{asgi_server.port}"

    visit(page, f"{public}/", "home")
    expect(page.locator(".plan").first).to_contain_text("tokens a month")
    assert "¢" not in page.content()
    visit(page, f"{public}/signup/", "signup")
    visit(page, f"{public}/go/?workspace=nowhere", "go-unknown", status=404)
    visit(page, f"{public}/no-such-page/", "404", status=404)
    expect(page.get_by_role("heading", name="This page does not exist")).to_be_visible()
    visit(page, f"http://nosuch.localhost:{asgi_server.port}/", "unknown-workspace", status=404)

    visit(page, f"{base}/login/", "login")
    assert page.locator('link[rel=icon][href="/favicon.ico"]').count() == 1
    host = {"Host": f"{world.tenant.subdomain}.localhost:{asgi_server.port}"}
    favicon = httpx.get(f"{asgi_server.url}/favicon.ico", headers=host)
    assert favicon.status_code == 200 and "icon" in favicon.headers["content-type"]
    visit(page, f"{asgi_server.host_url(pending.tenant.subdomain)}/", "pending-payment", status=402)

    log_in(page, base, world.owner.email)
    visit(page, f"{base}/", "documents-empty")
    workspace_nav(page, "Documents")
    document = document_add(asgi_server, world, "Security handbook", HANDBOOK)
    frames = chat_over_sse(asgi_server, world, "How often are passwords rotated?")
    conversation = frames[0]["conversation_id"]
    visit(page, f"{base}/", "documents")
    visit(page, f"{base}/?q=how+often+do+I+change+my+password", "search")
    expect(page.locator(".hit").first).to_contain_text("Security handbook")
    passage = page.locator(".hit-passage").first.get_attribute("data-chunk-id")
    visit(page, f"{base}/documents/{document['id']}/?passage={passage}#highlight", "document")
    visit(page, f"{base}/documents/{document['id']}/delete/", "document-delete")
    visit(page, f"{base}/chat/", "chat-new")
    workspace_nav(page, "Chat")
    visit(page, f"{base}/chat/{conversation}/", "chat")
    visit(page, f"{base}/chat/{conversation}/delete/", "conversation-delete")
    visit(page, f"{base}/usage/", "usage")
    workspace_nav(page, "Usage")
    visit(page, f"{base}/billing/", "billing")
    workspace_nav(page, "Billing")
    visit(page, f"{base}/no-such-page/", "404-workspace", status=404)
