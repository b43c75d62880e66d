"""Browser fixtures: Debian's headless Chromium through Playwright, pages at a phone's and a laptop's
width, fresh committed tenants the live server can see, and a way to commit rows from a test.

The live server's threads see committed rows only, and a browser test runs inside a transaction
that is rolled back; ``committed(fn)`` (tests/processes.py) runs ``fn`` on a connection of its own, which commits.
Set STRATA_SCREENSHOTS to a folder to keep the screenshots the tests take (``shot``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.ai.factories import fresh_world
from tests.conftest import World
from tests.factories import PASSWORD
from tests.processes import TLS

# Debian's chromium-headless-shell: the same Chromium release from the same source package, built for
# headless use only (what Playwright itself runs for headless tests). The same browser tests take
# about 30% less CPU and 20% less time on it than on the full browser in headless mode
# (docs/benchmarks.md, "The test suite's time"); the full browser is used where the shell is not installed.
CHROMIUM = shutil.which("chromium-headless-shell") or shutil.which("chromium") or "/usr/bin/chromium-headless-shell"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # *.localhost must reach our server, as in a desktop browser
    "--host-resolver-rules=MAP *.localhost 127.0.0.1",
    # Pages the tests serve through a route (to add the CSP) have no address; Chromium's local
    # network checks would then refuse their WebSocket to 127.0.0.1.
    "--disable-features=LocalNetworkAccessChecks",
]
PHONE, LAPTOP = 390, 1280
WIDTHS = [pytest.param(PHONE, id="390px"), pytest.param(LAPTOP, id="1280px")]

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.django_db)
            if not Path(CHROMIUM).exists():
                item.add_marker(
                    pytest.mark.skip(
                        reason="Debian chromium-headless-shell is not installed (tests/run.sh installs it)"
                    )
                )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still synchronous, so Django's async-safety guard is told so.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": LAPTOP, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture(params=WIDTHS)
def width(request: pytest.FixtureRequest) -> int:
    return request.param


# The policy the pages must work under: no inline script, handler or style anywhere.
STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"


NOT_STATIC = re.compile(r"^(?!.*/static/)")


def _with_strict_csp(route: Route) -> None:
    request = route.request
    if request.resource_type != "document":
        route.continue_()
        return
    # Playwright fetches outside the browser, without its *.localhost mapping: ask 127.0.0.1 by Host.
    parts = urlsplit(request.url)
    url = request.url
    if parts.hostname and parts.hostname.endswith(".localhost"):
        url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))
    response = route.fetch(url=url, headers={**request.headers, "host": parts.netloc}, max_redirects=0)
    route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_CSP})


def _watched_page(browser: Browser, width: int, *, strict_csp: bool) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": width, "height": 900 if width > PHONE else 844})
    context.set_default_timeout(20_000)
    if strict_csp:
        # Static files carry no policy of their own: matched in Playwright's driver, they never make
        # the round trip to this process (a page's scripts and styles went through it one by one).
        context.route(NOT_STATIC, _with_strict_csp)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: "Content Security Policy" in message.text and violations.append(message.text))
    yield page
    context.close()
    assert not violations, violations


@pytest.fixture
def sized_page(browser: Browser, width: int) -> Iterator[Page]:
    """A page at 390 px (a phone) or 1280 px (a laptop): tests using it run at both widths.

    Every page it opens is served with a strict Content-Security-Policy, and the test fails if
    the browser reports a violation (an inline script or style that would be blocked)."""
    yield from _watched_page(browser, width, strict_csp=True)


@pytest.fixture
def real_page(browser: Browser, width: int) -> Iterator[Page]:
    """A page at the test's width under the policy the server sends (``sized_page`` replaces it with
    a stricter one that has no form-action). The test fails if Chromium reports a violation."""
    yield from _watched_page(browser, width, strict_csp=False)


@pytest.fixture
def site(asgi_server, settings):  # noqa: ANN001, ANN201
    """Links the server builds (a workspace's address) point at the live server's port."""
    settings.PORT = asgi_server.port
    return asgi_server


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> World:  # noqa: ANN001
    """A tenant of this test module's own (documents, chats and usage of other modules stay out)."""
    with django_db_blocker.unblock():
        return fresh_world("Umbrella")


def log_in(page: Page, base: str, email: str, *, next_path: str = "/") -> None:
    page.goto(f"{base}/login/?next={next_path}")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page).not_to_have_url(f"{base}/login/?next={next_path}")
    page.wait_for_load_state("load")  # the page's scripts have run


def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    """Keep a screenshot when STRATA_SCREENSHOTS names a folder (to look at, not to compare).
    A page scrolled to a passage is shot as the window shows it (``full_page=False``)."""
    folder = os.environ.get("STRATA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        width = page.viewport_size["width"] if page.viewport_size else 0
        page.screenshot(path=str(Path(folder) / f"{name}-{width}.png"), full_page=full_page)


# What sticks out past the window's right edge, deepest first: the elements to look at.
WIDEST_ELEMENTS = """(limit) => [...document.querySelectorAll('body *')]
    .filter((node) => node.getBoundingClientRect().right > limit + 1)
    .slice(-5)
    .map((node) => `${node.tagName.toLowerCase()}${node.id ? '#' + node.id : ''}.${[...node.classList].join('.')}`
        + ` right=${Math.round(node.getBoundingClientRect().right)}`)"""


def fits_width(page: Page) -> None:
    """Nothing sticks out sideways: the page is no wider than the window."""
    # A check on the page's text can pass while its stylesheet is still on its way: measure once
    # the page has loaded, styled as a person sees it.
    page.wait_for_load_state("load")
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if widths[0] > widths[1]:
        wide = page.evaluate(WIDEST_ELEMENTS, widths[1])
        raise AssertionError(f"{page.url} is {widths[0]} px wide in a {widths[1]} px window; sticking out: {wide}")


def api(server: Any, world: World, method: str, path: str, *, as_member: bool = False, **kwargs: Any) -> Any:
    """Call the live server's API as the world's owner or member (what it writes is committed)."""
    headers = {
        "Host": f"{world.tenant.subdomain}.localhost:{server.port}",
        "Authorization": f"Token {world.member_token if as_member else world.owner_token}",
    }
    with httpx.Client(base_url=server.url, headers=headers, timeout=60, verify=TLS) as client:
        response = client.request(method, path, **kwargs)
    assert response.status_code < 400, response.text
    return response


def document_add(server: Any, world: World, title: str, content: str) -> dict[str, Any]:
    """A document, ingested by the time this returns (jobs run at commit in tests)."""
    return api(server, world, "POST", "/api/documents/", json={"title": title, "content": content}).json()


def chat_over_sse(server: Any, world: World, message: str, *, as_member: bool = False) -> list[dict[str, Any]]:
    """Ask through the SSE chat endpoint and return its frames (the conversation is committed)."""
    response = api(server, world, "POST", "/api/chat/", as_member=as_member, json={"message": message})
    return [json.loads(line[len("data: ") :]) for line in response.text.splitlines() if line.startswith("data: ")]
