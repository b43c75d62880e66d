"""The audit log page in the browser, at 390 px and 1280 px, under the strict CSP: an owner sees
their own sign-in, filters by action, and the export link downloads the same entries as CSV."""

from __future__ import annotations

import csv

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import fits_width, fresh_world, log_in, shot
from tests.conftest import World


@pytest.fixture(scope="module")
def audited(django_db_setup, django_db_blocker) -> World:  # noqa: ANN001
    with django_db_blocker.unblock():
        return fresh_world("Audited")


def test_an_owner_reads_filters_and_exports_the_audit_log(sized_page, audited, asgi_server, tmp_path):
    page = sized_page
    base = asgi_server.host_url(audited.tenant.subdomain)
    log_in(page, base, audited.owner.email, next_path="/audit/")

    rows = page.locator("#audit-entries tbody tr")
    expect(rows.filter(has_text="Signed in").first).to_contain_text(audited.owner.email)
    fits_width(page)
    shot(page, "audit-log")

    page.select_option("#audit-action", "auth.login_failed")
    page.click("#audit-filters button[type=submit]")
    expect(page).to_have_url(f"{base}/audit/?actor=&action=auth.login_failed&since=&until=")
    expect(page.locator("#audit-entries tbody tr[data-action='auth.login']")).to_have_count(0)

    page.select_option("#audit-action", "auth.login")
    page.click("#audit-filters button[type=submit]")
    with page.expect_download() as download:
        page.click("#audit-export-csv")
    path = tmp_path / "audit.csv"
    download.value.save_as(path)
    exported = list(csv.DictReader(path.open(encoding="utf-8")))
    assert exported and {row["action"] for row in exported} == {"auth.login"}
    assert audited.owner.email in {row["actor_label"] for row in exported}


def test_a_member_has_no_audit_link_and_is_refused(sized_page, audited, asgi_server):
    page = sized_page
    base = asgi_server.host_url(audited.tenant.subdomain)
    log_in(page, base, audited.member.email)
    expect(page.locator("nav a[href='/audit/']")).to_have_count(0)
    assert page.goto(f"{base}/audit/").status == 403
