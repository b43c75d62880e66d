"""The workspace switcher (issue 25 #22) in Chromium at 390 and 1280 px, under the server's own
Content-Security-Policy: a person in two organisations goes from one to the other and back from
the navigation, signed in without typing a password; a person in one sees no switcher."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tenants.models import Membership
from tests.browser.conftest import fits_width, fresh_world, log_in, shot
from tests.conftest import World


@pytest.fixture(scope="module")
def pair(django_db_setup, django_db_blocker) -> tuple[World, World]:  # noqa: ANN001
    """Two committed workspaces; the first's member belongs to the second as well."""
    with django_db_blocker.unblock():
        first, second = fresh_world("Northwind"), fresh_world("Southwind")
        Membership.objects.create(user=first.member, tenant=second.tenant, role=Membership.Role.ADMIN)
    return first, second


def switch_to(page: Page, name: str) -> None:
    switcher = page.locator("#workspace-switcher")
    switcher.locator("summary").click()
    fits_width(page)
    switcher.get_by_role("button", name=name).click()


def test_a_member_of_two_workspaces_switches_between_them_from_the_navigation(real_page, pair, site):
    first, second = pair
    page = real_page
    here, there = site.host_url(first.tenant.subdomain), site.host_url(second.tenant.subdomain)
    log_in(page, here, first.member.email)

    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    page.locator("#workspace-switcher summary").click()
    panel = page.locator("#workspace-switcher .menu-panel")
    expect(panel.locator("[aria-current]")).to_have_text(first.tenant.name)
    expect(panel.get_by_role("button", name=second.tenant.name)).to_be_visible()
    shot(page, "workspace-switcher")
    page.keyboard.press("Escape")

    switch_to(page, second.tenant.name)
    expect(page).to_have_url(f"{there}/", timeout=20_000)  # the switch page goes on by script
    expect(page.locator(".topbar .workspace-name")).to_have_text(second.tenant.name)
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("link", name="API keys")).to_be_visible()  # an admin there

    switch_to(page, first.tenant.name)
    expect(page).to_have_url(f"{here}/", timeout=20_000)
    expect(page.locator(".topbar .workspace-name")).to_have_text(first.tenant.name)
    expect(page.get_by_role("link", name="API keys")).to_have_count(0)  # a member here
    fits_width(page)


def test_a_member_of_one_workspace_sees_no_switcher(real_page, pair, site):
    first, second = pair
    page = real_page
    log_in(page, site.host_url(first.tenant.subdomain), first.owner.email)

    expect(page.locator(".topbar .workspace-name")).to_have_text(first.tenant.name)
    expect(page.locator("#workspace-switcher")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(second.tenant.name)
