"""Usage per day, feature and person for a period (the usage page, its CSV and the operators' copy)."""

from __future__ import annotations

import csv
import datetime as dt
import io

from billing.models import UsageEvent
from billing.selectors import UNATTRIBUTED, usage_report
from billing.views import usage_csv
from core.models import User
from tests.billing.conftest import record_usage

NOW = dt.datetime(2026, 3, 15, 18, tzinfo=dt.UTC)


def on(event: UsageEvent, day: int, user=None) -> None:  # noqa: ANN001
    UsageEvent.objects.filter(pk=event.pk).update(created=dt.datetime(2026, 3, day, 9, tzinfo=dt.UTC), user=user)


def test_tokens_are_counted_per_day_by_feature_and_by_person(acme):
    on(record_usage(acme.tenant, tokens=1000, feature="chat"), 2, acme.owner)
    on(record_usage(acme.tenant, tokens=400, feature="summarise"), 2, acme.member)
    on(record_usage(acme.tenant, tokens=100, feature="chat"), 14)
    on(record_usage(acme.tenant, tokens=999, feature="chat"), 1)
    UsageEvent.objects.filter(tenant=acme.tenant, total_tokens=999).update(
        created=dt.datetime(2026, 2, 28, 23, 59, tzinfo=dt.UTC)  # the previous period
    )

    report = usage_report(tenant_id=acme.tenant.pk, now=NOW)

    assert (report.period_start, report.period_end, len(report.days)) == (dt.date(2026, 3, 1), dt.date(2026, 4, 1), 31)
    assert report.used == 1500
    assert report.by_feature["chat"][1] == 1000 and report.by_feature["chat"][13] == 100
    assert report.by_feature["summarise"][1] == 400
    assert report.by_person == {
        acme.owner.email: [0, 1000] + [0] * 29,
        acme.member.email: [0, 400] + [0] * 29,
        UNATTRIBUTED: [0] * 13 + [100] + [0] * 17,
    }
    assert report.cumulative[0] == 0 and report.cumulative[1] == 1400 and report.cumulative[14] == 1500
    assert report.cumulative[15] is None  # after today nothing is known yet
    assert report.feature_totals["chat"]["calls"] == 2
    assert report.included == 200_000


def test_the_csv_has_a_row_per_day_feature_and_person_and_defuses_formulas(acme):
    mallory = User.objects.get(pk=acme.member.pk)  # a copy: the session's world object stays as it was
    mallory.email = "=HYPERLINK(evil)@example.com"
    mallory.save(update_fields=["email"])
    on(record_usage(acme.tenant, tokens=300, feature="chat"), 3, mallory)
    report = usage_report(tenant_id=acme.tenant.pk, now=NOW)

    rows = list(csv.DictReader(io.StringIO(usage_csv(report, filename="u.csv", people=True).content.decode())))
    hidden = list(csv.DictReader(io.StringIO(usage_csv(report, filename="u.csv", people=False).content.decode())))

    assert rows == [
        {
            "date": "2026-03-03",
            "feature": "chat",
            "person": "'=HYPERLINK(evil)@example.com",
            "input_tokens": "225",
            "output_tokens": "75",
            "total_tokens": "300",
            "cost_usd": "0.001800",
            "calls": "1",
        }
    ]
    assert hidden[0]["person"] == ""


def test_the_operator_admin_shows_a_tenants_usage_chart_and_csv(acme, admin_client):
    admin_client.defaults["HTTP_HOST"] = "localhost"
    record_usage(acme.tenant, tokens=1234)

    page = admin_client.get(f"/admin/tenants/tenant/{acme.tenant.pk}/usage/")
    exported = admin_client.get(f"/admin/tenants/tenant/{acme.tenant.pk}/usage.csv")

    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="usage-chart"' in body and 'id="usage-data"' in body and "1,234" in body
    assert exported["Content-Type"].startswith("text/csv")
    assert sum(int(row["total_tokens"]) for row in csv.DictReader(io.StringIO(exported.content.decode()))) == 1234
    assert (
        f"/admin/tenants/tenant/{acme.tenant.pk}/usage/" in admin_client.get("/admin/tenants/tenant/").content.decode()
    )
