"""A new organisation's first hour outside the documents and chat pages (issue 25), in Chromium at
390 and 1280 px, under the server's own Content-Security-Policy: the home page's "Go" box, a member
removed while logged in, logging in while logged in, and the other rough edges found there."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from billing.selectors import plans_offered
from core.models import User
from tenants.models import Membership, Tenant
from tests.browser.conftest import PHONE, fresh_world, log_in, shot
from tests.conftest import World
from tests.factories import PASSWORD
from tests.processes import committed


def test_the_go_box_lands_on_the_workspace_login_page(real_page, world, site):
    page = real_page
    page.goto(f"http://localhost:{site.port}/")
    page.fill("#workspace", world.tenant.subdomain)
    page.click("#workspace-login button[type=submit]")

    expect(page).to_have_url(f"{site.host_url(world.tenant.subdomain)}/login/")
    expect(page.locator("#id_username")).to_be_visible()


def test_a_member_removed_while_logged_in_reaches_the_login_page_and_logs_in_as_someone_else(real_page, site):
    world: World = committed(fresh_world, "Removal")
    page = real_page
    base = site.host_url(world.tenant.subdomain)
    log_in(page, base, world.member.email)
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()

    committed(lambda: Membership.objects.filter(user=world.member, tenant=world.tenant).delete())
    page.goto(f"{base}/")

    expect(page).to_have_url(f"{base}/login/?next=/")
    expect(page.locator("#id_username")).to_be_visible()
    log_in(page, base, world.owner.email)
    expect(page).to_have_url(f"{base}/")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def test_the_login_page_sends_someone_already_logged_in_to_the_workspace(real_page, world, site):
    page = real_page
    base = site.host_url(world.tenant.subdomain)
    log_in(page, base, world.member.email)

    response = page.goto(f"{base}/login/")

    assert response is not None and response.status == 200
    expect(page).to_have_url(f"{base}/")


def test_signup_shows_every_error_at_once_then_logs_the_owner_in(real_page, site, unique_subdomain):
    page = real_page
    page.goto(f"http://localhost:{site.port}/signup/")
    if not any(plan.is_paid for plan in plans_offered()):
        expect(page.locator("#signup")).not_to_contain_text("Stripe")

    page.fill("#subdomain", "x")
    page.click("#signup-submit")
    for field in ("organisation", "subdomain", "email", "password"):
        expect(page.locator(f"#{field} + .field-error")).to_be_visible()

    page.fill("#organisation", "First Hour Ltd")
    page.fill("#name", "Ada Owner")
    page.fill("#subdomain", unique_subdomain)
    expect(page.locator("#subdomain-preview")).to_have_text(unique_subdomain)
    page.fill("#email", f"ada@{unique_subdomain}.test")
    page.fill("#password", PASSWORD)
    page.click("#signup-submit")

    expect(page.locator("#signup-continue")).to_be_visible(timeout=60_000)
    expect(page.locator("#signup")).to_be_hidden()
    page.click("#signup-continue")
    expect(page).to_have_url(f"{site.host_url(unique_subdomain)}/")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    assert User.objects.get(email=f"ada@{unique_subdomain}.test").full_name == "Ada Owner"


def test_the_home_page_does_not_point_visitors_at_the_operator_admin(real_page, site):
    page = real_page
    page.goto(f"http://localhost:{site.port}/")

    expect(page.locator("a[href^='/admin']")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("operator admin")


def test_a_suspended_workspace_says_whom_to_contact(real_page, site, settings):
    settings.SUPPORT_EMAIL = "help@strata.example"
    world: World = committed(fresh_world, "Suspended")
    committed(lambda: Tenant.objects.filter(pk=world.tenant.pk).update(status=Tenant.Status.SUSPENDED))
    page = real_page

    response = page.goto(f"{site.host_url(world.tenant.subdomain)}/")

    assert response is not None and response.status == 403
    expect(page.locator("main a[href='mailto:help@strata.example']")).to_be_visible()


@pytest.fixture
def operator(django_db_blocker) -> str:  # noqa: ANN001
    """A platform operator (committed) who logs in to the public host's admin with PASSWORD."""
    email = f"operator-{uuid.uuid4().hex[:8]}@strata.test"
    committed(lambda: User.objects.create_superuser(email=email, password=PASSWORD))
    return email


def test_the_operators_tenant_list_fits_and_tells_warnings_from_successes(real_page, site, settings, operator):
    settings.STRIPE_SECRET_KEY = ""  # billing off: the admin says so, as a warning
    committed(fresh_world, "Internationalorganisation")  # a long name and subdomain in the list
    page = real_page
    admin = f"http://localhost:{site.port}/admin/"
    page.goto(f"{admin}login/")
    page.fill("#id_username", operator)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.goto(f"{admin}tenants/tenant/")
    shot(page, "operator-tenants")

    notice = page.locator("ul.messagelist li", has_text="Stripe is not configured")
    expect(notice).to_have_class(re.compile(r"\bwarning\b"))
    filters = page.locator("#changelist-filter details summary, #changelist-filter h3")
    titles = [title.strip().lower() for title in filters.all_inner_texts()]
    assert len(titles) == len(set(titles)), titles  # no filter shown twice under one title
    if page.viewport_size and page.viewport_size["width"] > PHONE:  # the admin is a desk's tool
        widths = page.evaluate(
            "[document.querySelector('#result_list').scrollWidth,"
            " document.querySelector('#changelist .results').clientWidth]"
        )
        assert widths[0] <= widths[1], f"the tenants table is {widths[0]} px wide in a {widths[1]} px box: clipped"


def test_the_billing_page_asks_before_changing_plan_and_does_not_contradict_itself(real_page, site, settings):
    settings.DEBUG, settings.STRIPE_SECRET_KEY = True, ""  # a local demo: paid plans switch without payment
    world: World = committed(fresh_world, "Billing")
    page = real_page
    base = site.host_url(world.tenant.subdomain)
    log_in(page, base, world.owner.email)
    page.goto(f"{base}/billing/")

    free = page.locator(".plan[data-plan=free]")
    assert free.locator("h3").inner_text() != free.locator(".price").inner_text()  # not "Free / Free"
    expect(page.locator("main")).not_to_contain_text("only the plans below that need no payment")
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#choose-pro")
    expect(page.locator("#current-plan")).to_have_text("Free")
    assert asked and "Pro" in asked[0], asked
