"""Usage by person names an API key by its name, not by its placeholder address (issue 25 #10)."""

from __future__ import annotations

import datetime as dt

from billing.models import UsageEvent
from billing.selectors import usage_report
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_create
from tests.billing.conftest import record_usage

NOW = dt.datetime(2026, 3, 15, 18, tzinfo=dt.UTC)


def test_work_done_with_an_api_key_shows_the_keys_name(acme):
    key, _ = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="Nightly import", scope="write")
    event = record_usage(acme.tenant, tokens=500, feature="chat")
    UsageEvent.objects.filter(pk=event.pk).update(
        created=dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC), user=ApiKey.objects.get(pk=key.pk).user
    )

    report = usage_report(tenant_id=acme.tenant.pk, now=NOW)

    assert list(report.by_person) == ["API key: Nightly import"]
