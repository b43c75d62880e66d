"""Two-factor sign-in in headless Chromium, under the strict Content-Security-Policy, at 390 px and
1280 px: setting it up from the QR code page (the key read off the page, codes computed from it),
the recovery codes shown once, signing in with the code form, and an owner requiring it so that a
member is sent to set it up before anything else."""

from __future__ import annotations

import time
import uuid

import pytest
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from playwright.sync_api import Page, expect

from core.models import User
from tenants.mfa.services import mfa_policy_set, totp_enrol_confirm, totp_enrol_start
from tenants.models import Membership
from tests.browser.conftest import fits_width, fresh_world, shot
from tests.conftest import World
from tests.factories import PASSWORD
from tests.processes import committed


def code(secret: str, step: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + step))


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker) -> World:  # noqa: ANN001
    with django_db_blocker.unblock():
        return fresh_world("Twofactor")


def newcomer(world: World, role: str = Membership.Role.MEMBER) -> User:
    """A person of this test alone (committed, so the live server sees them), who logs in with PASSWORD."""

    def make() -> User:
        user = User.objects.create_user(f"p{uuid.uuid4().hex[:8]}@{world.tenant.subdomain}.test", PASSWORD)
        Membership.objects.create(user=user, tenant=world.tenant, role=role)
        return user

    return committed(make)


def password_step(page: Page, base: str, email: str, next_path: str = "/") -> None:
    page.goto(f"{base}/login/?next={next_path}")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")


def set_up_on_the_page(page: Page) -> str:
    """From the security page's "Set up" to "on"; the secret, read off the page."""
    page.click("#mfa-start button[type=submit]")
    qr = page.locator("#mfa-qr")
    expect(qr).to_be_visible()
    assert page.evaluate("document.getElementById('mfa-qr').naturalWidth") > 0  # the data: image loaded
    fits_width(page)
    shot(page, "mfa-set-up")
    secret = page.locator("#mfa-secret").inner_text().replace(" ", "")
    assert f"secret={secret}" in page.locator("#mfa_uri").input_value()
    page.fill("#mfa_code", code(secret))
    page.click("#mfa-confirm button[type=submit]")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    expect(page.locator("#mfa-status")).to_contain_text("On.")
    return secret


def test_a_person_sets_up_two_factor_and_then_signs_in_with_a_code(sized_page, world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(world.tenant.subdomain)
    user = newcomer(world)

    password_step(page, base, user.email)
    expect(page).to_have_url(f"{base}/")
    page.goto(f"{base}/account/security/")
    expect(page.locator("#mfa-status")).to_contain_text("Off.")
    secret = set_up_on_the_page(page)
    fits_width(page)
    shot(page, "mfa-recovery-codes")
    page.reload()  # the codes are shown once
    expect(page.locator("#recovery-codes")).to_have_count(0)

    page.context.clear_cookies()
    password_step(page, base, user.email, "/chat/")
    expect(page.locator("#mfa-login")).to_be_visible()  # no session yet: the code form
    page.fill("#id_code", "000000" if code(secret, 1) != "000000" else "111111")
    page.click("#mfa-login button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("That code is not right.")
    page.fill("#id_code", code(secret, 1))
    page.click("#mfa-login button[type=submit]")
    expect(page).to_have_url(f"{base}/chat/")


def test_an_owner_requires_two_factor_and_a_member_must_set_it_up_first(page, world, asgi_server):
    base = asgi_server.host_url(world.tenant.subdomain)
    owner = newcomer(world, Membership.Role.OWNER)

    def owner_enrols() -> str:
        enrolment = totp_enrol_start(user=owner)
        totp_enrol_confirm(
            user=owner, enrolment_token=enrolment.enrolment_token, code=code(enrolment.secret), tenant=world.tenant
        )
        return enrolment.secret

    owner_secret = committed(owner_enrols)
    try:
        password_step(page, base, owner.email, "/account/security/")
        page.fill("#id_code", code(owner_secret, 1))
        page.click("#mfa-login button[type=submit]")
        expect(page).to_have_url(f"{base}/account/security/")
        page.select_option("#mfa-required", "on")
        page.click("#mfa-policy-form button[type=submit]")
        expect(page.locator(".notice")).to_contain_text("now required")

        page.context.clear_cookies()
        member = newcomer(world)
        password_step(page, base, member.email, "/chat/")
        expect(page).to_have_url(f"{base}/account/security/?required=1&next=/chat/")
        expect(page.locator("#mfa-required-notice")).to_be_visible()
        page.goto(f"{base}/")  # anything else leads back here
        expect(page.locator("#mfa-required-notice")).to_be_visible()
        set_up_on_the_page(page)
        page.click("#mfa-continue")
        expect(page).to_have_url(f"{base}/")
        expect(page.locator("#mfa-required-notice")).to_have_count(0)
    finally:
        committed(lambda: mfa_policy_set(tenant=world.tenant, actor=owner, required=False))
