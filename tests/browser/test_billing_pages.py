"""Billing in the browser, at 390 px and 1280 px, against the wire-level fake of Stripe (its hosted
Checkout and customer-portal pages included, webhooks signed and delivered to the live server):
an abandoned paid signup resumed and paid, and an owner upgrading through Checkout, changing plan
in the portal and cancelling."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from billing.models import Plan
from tenants.models import Tenant
from tests.browser.conftest import fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.factories import PASSWORD
from tests.fakes.stripe import FakeStripe
from tests.processes import committed

API_KEY = "sk_test_strata_browser_0000"
WEBHOOK_SECRET = "whsec_strata_browser_test"
PRICES = {"pro": ("price_pro_base", "price_pro_tokens"), "enterprise": ("price_enterprise_base", "")}


def _set_prices(prices: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    before = {}
    for slug, (base, metered) in prices.items():
        plan = Plan.objects.get(slug=slug)
        before[slug] = (plan.stripe_price_id, plan.stripe_metered_price_id)
        Plan.objects.filter(slug=slug).update(stripe_price_id=base, stripe_metered_price_id=metered)
    return before


@pytest.fixture(scope="module")
def stripe_site() -> Iterator[FakeStripe]:
    with FakeStripe(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET) as fake:
        yield fake


@pytest.fixture
def stripe_on(stripe_site: FakeStripe, asgi_server, settings, django_db_setup) -> Iterator[FakeStripe]:  # noqa: ANN001
    """Stripe on for the live server, paid plans priced (committed), webhooks sent to the live server."""
    stripe_site.reset()
    stripe_site.webhook_url = f"http://localhost:{asgi_server.port}/api/billing/webhook/"
    stripe_site.portal_prices = [
        {"price": PRICES["enterprise"][0], "name": "Enterprise"},
        {"price": PRICES["pro"][0], "name": "Pro"},
    ]
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_API_BASE = stripe_site.base_url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.PORT = asgi_server.port  # Stripe sends people back to the workspace's address
    # The fake's pages stand in for Stripe's: billing forms may redirect there (form-action).
    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    policy["DIRECTIVES"]["form-action"].append(stripe_site.base_url)
    settings.CONTENT_SECURITY_POLICY = policy
    before = committed(_set_prices, PRICES)
    yield stripe_site
    committed(_set_prices, before)


def current_plan_becomes(page: Page, name: str, timeout: float = 20) -> None:
    """The webhook arrives on its own schedule: reload the billing page until it shows ``name``."""
    deadline = time.monotonic() + timeout
    while page.locator("#current-plan").text_content() != name:
        assert time.monotonic() < deadline, f"the plan stayed {page.locator('#current-plan').text_content()}"
        page.wait_for_timeout(300)
        page.goto(page.url.split("?")[0])
    expect(page.locator("#current-plan")).to_have_text(name)


def test_an_abandoned_paid_signup_is_resumed_and_paid(sized_page, stripe_on, asgi_server):
    page = sized_page
    subdomain = f"s{uuid.uuid4().hex[:10]}"
    email = f"boss@{subdomain}.test"
    page.goto(f"http://localhost:{asgi_server.port}/signup/?plan=pro")
    page.fill("#organisation", "Initech")
    page.fill("#subdomain", subdomain)
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    expect(page.locator("#plan")).to_have_value("pro")
    shot(page, "signup")
    page.click("#signup-submit")

    expect(page.get_by_role("heading", name="Pay cs_test_", exact=False)).to_be_visible(timeout=20_000)
    page.click("#cancel")  # abandon the payment

    base = asgi_server.host_url(subdomain)
    expect(page).to_have_url(f"{base}/?checkout=cancelled")
    expect(page.get_by_role("heading", level=1)).to_contain_text("waiting for its first payment")
    expect(page.locator("main")).to_contain_text("The payment was cancelled")
    fits_width(page)
    page.click("#login-to-pay")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator("#complete-payment")).to_be_visible()
    shot(page, "pending-owner")
    assert len(stripe_on.checkout_sessions) == 1

    page.click("#complete-payment")
    expect(page.get_by_role("heading", name="Pay cs_test_", exact=False)).to_be_visible(timeout=20_000)
    assert len(stripe_on.checkout_sessions) == 2  # a fresh session; the abandoned one expires on its own
    page.click("#pay")

    # Back on the workspace: a "thank you" page that reloads itself until the webhook has arrived.
    expect(page.get_by_role("heading", name="Documents", level=1)).to_be_visible(timeout=30_000)
    assert Tenant.objects.get(subdomain=subdomain).status == Tenant.Status.ACTIVE
    page.goto(f"{base}/billing/")
    expect(page.locator("#current-plan")).to_have_text("Pro")
    expect(page.locator("#subscription-status")).to_have_text("Active")


@pytest.fixture
def free_world(django_db_setup) -> World:  # noqa: ANN001
    return committed(fresh_world, "Upgrader")


def test_an_owner_upgrades_changes_plan_in_the_portal_and_cancels(sized_page, stripe_on, free_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(free_world.tenant.subdomain)
    log_in(page, base, free_world.owner.email, next_path="/billing/")
    expect(page.locator("#current-plan")).to_have_text("Free")
    expect(page.locator(".plan")).to_have_count(3)
    fits_width(page)
    shot(page, "billing-free")

    page.click("#choose-pro")  # first paid plan: Stripe Checkout
    expect(page.get_by_role("heading", name="Pay cs_test_", exact=False)).to_be_visible(timeout=20_000)
    page.click("#pay")
    expect(page).to_have_url(f"{base}/billing/?checkout=success")
    current_plan_becomes(page, "Pro")
    shot(page, "billing-pro")

    page.click("#choose-enterprise")  # a paying subscription changes plan in the customer portal
    expect(page.get_by_role("heading", name="Change plan")).to_be_visible(timeout=20_000)
    page.click(f"#choose-{PRICES['enterprise'][0]}")
    expect(page).to_have_url(f"{base}/billing/?changed=1")
    current_plan_becomes(page, "Enterprise")

    page.click("#cancel-subscription")
    expect(page.get_by_role("heading", name="Cancel your subscription")).to_be_visible(timeout=20_000)
    page.click("#confirm-cancel")
    current_plan_becomes(page, "Free")
    expect(page.locator("#subscription-status")).to_have_text("Canceled")


def test_a_member_sees_the_plan_but_cannot_change_it(sized_page, free_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(free_world.tenant.subdomain)
    log_in(page, base, free_world.member.email, next_path="/billing/")

    expect(page.locator("#owners-only")).to_be_visible()
    expect(page.locator("#current-plan")).to_have_text("Free")
    expect(page.locator(".plan form")).to_have_count(0)
    fits_width(page)
