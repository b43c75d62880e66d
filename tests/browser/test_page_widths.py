"""Every page at 390 and 1280 px for each role (owner, admin, member) and for a visitor: no page is
wider than the window, and no button or column heading is broken mid-word over several lines
(issue 25 #4: /members/ and /keys/ were 563 and 528 px wide, "Revoke" one letter per line); no
button is the browser's unstyled grey box, and no form's submit button touches the field above
it (#12).

The documents and chat pages (under ai/) are only reported here, not asserted: their templates
are another change's."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from playwright.sync_api import Page

from tenants.models import Membership
from tenants.services.api_keys import api_key_create
from tenants.services.invitations import invitation_create
from tests.browser.conftest import fresh_world, log_in, shot
from tests.conftest import World
from tests.factories import UserFactory

TEAM_PAGES = [
    "/members/",
    "/keys/",
    "/account/",
    "/account/security/",
    "/audit/",
    "/usage/",
    "/billing/",
    "/settings/sso/",
    "/no-such-page/",
]
AI_PAGES = ["/", "/chat/", "/collections/new/"]
PUBLIC_PAGES = ["/", "/signup/", "/login/", "/go/?workspace=nowhere", "/no-such-page/"]
VISITOR_TENANT_PAGES = ["/login/", "/password-reset/"]

# How wide the page is; the buttons, links styled as buttons and column headings whose text wraps
# onto more lines than it has words (a word broken mid-word); buttons with the browser's own look;
# submit buttons less than 8 px below the form's last field (beside it, gap < 0, is fine).
MEASURE = """() => {
  const broken = [];
  for (const el of document.querySelectorAll('main button, main .btn, main th, main input[type=submit]')) {
    if (!el.offsetParent) continue;
    const text = (el.innerText || el.value || '').trim();
    if (!text) continue;
    const range = document.createRange();
    range.selectNodeContents(el);
    const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
    if (lines.size > text.split(/\\s+/).length)
      broken.push(`${el.tagName.toLowerCase()} "${text}" on ${lines.size} lines`);
  }
  for (const button of document.querySelectorAll('main button')) {
    if (!button.offsetParent) continue;
    const style = getComputedStyle(button);
    if (style.backgroundColor === 'rgb(239, 239, 239)')
      broken.push(`button "${button.innerText.trim()}" is unstyled`);
  }
  for (const form of document.querySelectorAll('main form')) {
    const submit = [...form.querySelectorAll('button[type=submit]')].pop();
    const field = [...form.querySelectorAll('input:not([type=hidden]), select, textarea')].pop();
    if (!submit || !field || !submit.offsetParent || !field.offsetParent) continue;
    const gap = submit.getBoundingClientRect().top - field.getBoundingClientRect().bottom;
    if (gap >= 0 && gap < 8) broken.push(`button "${submit.innerText.trim()}" touches the field above it (${gap} px)`);
  }
  return {width: document.documentElement.scrollWidth, window: window.innerWidth, broken};
}"""


@pytest.fixture(scope="module")
def team(django_db_setup, django_db_blocker) -> World:  # noqa: ANN001
    """A workspace with an admin too, an open invitation and an API key: tables with rows in them."""
    with django_db_blocker.unblock():
        world = fresh_world("Widths")
        admin = UserFactory(email=f"admin-with-a-rather-long-address@{world.tenant.subdomain}.example.com")
        Membership.objects.create(user=admin, tenant=world.tenant, role=Membership.Role.ADMIN)
        world.admin = admin  # type: ignore[attr-defined]
        invitation_create(
            tenant=world.tenant, actor=world.owner, email="new.colleague@example.com", role=Membership.Role.MEMBER
        )
        api_key_create(tenant=world.tenant, created_by=world.owner, name="Nightly import", scope="write")
    return world


def measure(page: Page, url: str, name: str = "") -> list[str]:
    page.goto(url)
    page.wait_for_load_state("load")
    if name:
        shot(page, name)
    found: dict[str, Any] = page.evaluate(MEASURE)
    problems = list(found["broken"])
    if found["width"] > found["window"]:
        problems.append(f"{found['width']} px wide in a {found['window']} px window")
    return [f"{url}: {problem}" for problem in problems]


@pytest.mark.parametrize("role", ["owner", "admin", "member"])
def test_every_page_fits_the_window_with_styled_buttons_for_each_role(sized_page, team, asgi_server, role):
    page = sized_page
    base = asgi_server.host_url(team.tenant.subdomain)
    log_in(page, base, getattr(team, role).email)

    problems = [
        problem for path in TEAM_PAGES for problem in measure(page, f"{base}{path}", f"{role}{path.replace('/', '-')}")
    ]
    ai_problems = [problem for path in AI_PAGES for problem in measure(page, f"{base}{path}")]
    if ai_problems:  # reported, not failed: the ai/ pages are another change's
        warnings.warn(f"ai/ pages as {role}: {ai_problems}", stacklevel=1)

    assert not problems, "\n".join(problems)


def test_every_public_page_fits_the_window_with_styled_buttons(sized_page, team, asgi_server):
    page = sized_page
    public = f"http://localhost:{asgi_server.port}"
    base = asgi_server.host_url(team.tenant.subdomain)

    problems = [problem for path in PUBLIC_PAGES for problem in measure(page, f"{public}{path}")]
    problems += [problem for path in VISITOR_TENANT_PAGES for problem in measure(page, f"{base}{path}")]

    assert not problems, "\n".join(problems)
