"""The usage page in the browser, at 390 px and 1280 px: the chart's bars add up to the tokens used,
split by feature or by person, with the plan's allowance as a line; the CSV says the same."""

from __future__ import annotations

import csv
import datetime as dt

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from ai.llm import Usage
from billing.models import UsageEvent
from billing.services import period_start, usage_record
from tests.browser.conftest import fits_width, fresh_world, log_in, shot
from tests.conftest import World

CHART = "Chart.getChart(document.getElementById('usage-chart'))"


def _spend(world: World) -> int:
    """Three days of usage by two people (and one call with no person); returns the tokens."""
    today = timezone.now().date()
    first = period_start()
    days = [max(first, today - dt.timedelta(days=n)) for n in (4, 2, 0)]
    calls = [
        (world.owner.pk, "chat", 1200, days[0]),
        (world.member.pk, "chat", 800, days[1]),
        (world.member.pk, "summarise", 3000, days[1]),
        (None, "summarise", 500, days[2]),
        (world.owner.pk, "chat", 250, days[2]),
    ]
    with tenant_context(world.tenant):
        for n, (user_id, feature, tokens, day) in enumerate(calls):
            event = usage_record(
                tenant_id=world.tenant.pk,
                user_id=user_id,
                feature=feature,
                model="claude-sonnet-4-6",
                usage=Usage(input_tokens=tokens - tokens // 5, output_tokens=tokens // 5),
                request_key=f"browser:{n}",
            )
            noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
            UsageEvent.objects.filter(pk=event.pk).update(created=noon)
    return sum(call[2] for call in calls)


@pytest.fixture(scope="module")
def spent(django_db_setup, django_db_blocker) -> tuple[World, int]:  # noqa: ANN001
    with django_db_blocker.unblock():
        world = fresh_world("Spender")
        return world, _spend(world)


def test_the_chart_adds_up_to_the_usage_and_the_csv_agrees(sized_page, spent, asgi_server, tmp_path):
    page = sized_page
    world, total = spent
    base = asgi_server.host_url(world.tenant.subdomain)
    log_in(page, base, world.owner.email, next_path="/usage/")

    expect(page.locator("#used-tokens")).to_have_text(f"{total:,}")
    page.wait_for_function(f"{CHART} !== undefined")
    datasets = page.evaluate(f"{CHART}.data.datasets.map((d) => [d.type, d.label, d.data])")
    bars = {label: data for kind, label, data in datasets if kind == "bar"}
    lines = {label: data for kind, label, data in datasets if kind == "line"}
    assert set(bars) == {"Chat", "Summaries"}
    assert sum(sum(values) for values in bars.values()) == total
    assert set(lines["Plan allowance"]) == {200_000}
    assert max(value for value in lines["Running total"] if value is not None) == total
    fits_width(page)
    shot(page, "usage")

    page.click("[data-split=person]")
    people = page.evaluate(f"{CHART}.data.datasets.filter((d) => d.type === 'bar').map((d) => [d.label, d.data])")
    by_person = {label: sum(data) for label, data in people}
    assert by_person == {world.member.email: 3800, world.owner.email: 1450, "(no person)": 500}
    expect(page.locator("#usage-people")).to_contain_text(world.member.email)

    with page.expect_download() as download:
        page.click("#export-csv")
    path = tmp_path / "usage.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(path.open()))
    assert sum(int(row["total_tokens"]) for row in rows) == total
    assert {row["person"] for row in rows} == {world.member.email, world.owner.email, "(no person)"}


def test_a_member_sees_usage_by_feature_but_not_by_person(sized_page, spent, asgi_server):
    page = sized_page
    world, total = spent
    log_in(page, asgi_server.host_url(world.tenant.subdomain), world.member.email, next_path="/usage/")

    expect(page.locator("#used-tokens")).to_have_text(f"{total:,}")
    expect(page.locator("[data-split=person]")).to_have_count(0)
    expect(page.locator("#usage-people")).to_have_count(0)
    expect(page.locator("#usage-features tr[data-feature=summarise]")).to_contain_text("3,500")
