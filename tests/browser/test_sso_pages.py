"""Single sign-on in headless Chromium, under the strict Content-Security-Policy, at 390 px and
1280 px, against the real OpenID Connect provider on loopback: an owner sets it up on the settings
page, runs the test sign-in and sees the claims, then a person signs in with "Sign in with SSO"
from the login page; a person from a domain that is not allowed ends on a readable refusal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.fakes.oidc_provider import FakeOidcProvider

CLIENT_ID, CLIENT_SECRET = "strata-browser", "browser-client-secret"


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> World:  # noqa: ANN001
    with django_db_blocker.unblock():
        return fresh_world("Singlesignon")


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider() as provider:
        provider.client_add(CLIENT_ID, CLIENT_SECRET)
        yield provider


def test_an_owner_sets_up_sso_tests_it_and_a_person_signs_in_with_it(
    sized_page: Page, world: World, idp: FakeOidcProvider, asgi_server
) -> None:  # noqa: ANN001
    page = sized_page
    base = asgi_server.host_url(world.tenant.subdomain)
    domain = f"{world.tenant.subdomain}.test"
    width = page.viewport_size["width"] if page.viewport_size else 0
    idp.person = {"sub": f"grace-{width}", "email": f"grace{width}@{domain}", "email_verified": True, "name": "Grace"}

    log_in(page, base, world.owner.email)
    page.click(".menu summary")
    page.click("#sso-settings-link")
    expect(page).to_have_url(f"{base}/settings/sso/")
    page.select_option("#id_protocol", "oidc")
    page.fill("#id_issuer", idp.issuer)
    page.fill("#id_client_id", CLIENT_ID)
    page.fill("#id_client_secret", CLIENT_SECRET)
    page.fill("#id_allowed_domains", domain)
    page.click("#sso-save")
    expect(page.locator("#sso-status")).to_contain_text("OpenID Connect")
    expect(page.locator("#sso-callback-url")).to_have_text(f"{base}/sso/callback/")
    fits_width(page)
    shot(page, "sso-settings")

    # The test sign-in: the whole flow, ending on the claims; the owner stays who they are.
    page.click("#sso-test")
    expect(page.locator("#sso-claims [data-claim=email]")).to_contain_text(f"grace{width}@{domain}")
    fits_width(page)
    shot(page, "sso-test-result")
    page.goto(f"{base}/account/")
    expect(page.locator(".menu-email")).to_have_text(world.owner.email)
    page.click(".menu summary")
    page.click("#logout")

    # A person signs in from the login page and lands where they were going.
    page.goto(f"{base}/login/?next=/chat/")
    page.click("#sso-login")
    expect(page).to_have_url(f"{base}/chat/")
    expect(page.locator(".menu-email")).to_have_text(f"grace{width}@{domain}")
    page.click(".menu summary")
    page.click("#logout")

    # Someone from elsewhere ends on a page that says why.
    idp.person = {"sub": "eve", "email": "eve@elsewhere.test", "email_verified": True}
    page.goto(f"{base}/login/")
    page.click("#sso-login")
    expect(page.locator("#sso-refused")).to_contain_text("elsewhere.test may not join")
    expect(page.locator("#sso-refused code")).to_have_text("domain_not_allowed")
    fits_width(page)
    shot(page, "sso-refused")
