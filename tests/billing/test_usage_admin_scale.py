"""The operators' ledger list stays fast as the ledger grows: index range scans only, choices of
the model filter without SELECT DISTINCT, keyset pages, exact-match search."""

from __future__ import annotations

import html
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import UsageEvent
from tests.conftest import host_client

CHANGELIST = "/admin/billing/usageevent/"


@pytest.fixture
def operator_client(django_user_model, db):  # noqa: ANN001
    operator = django_user_model.objects.create_superuser("ops-scale@example.com", "ops-Passw0rd!")
    client = host_client("localhost")
    client.force_login(operator)
    return client


def ledger_insert(tenant_ids: list[int], count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO billing_usageevent (tenant_id, feature, model, input_tokens, output_tokens,
                cache_creation_input_tokens, cache_read_input_tokens, total_tokens, cost_micros, request_key,
                created, meter_status, meter_attempts, meter_error)
            SELECT (%s::bigint[])[1 + g %% cardinality(%s::bigint[])],
                CASE WHEN g %% 3 = 0 THEN 'chat' ELSE 'summarise' END,
                CASE WHEN g %% 5 = 0 THEN 'claude-haiku-4-5' ELSE 'claude-sonnet-4-6' END, 100, 20, 0, 0, 120, 900,
                'scale:' || g, now() - make_interval(secs => g),
                CASE WHEN g %% 400 = 0 THEN 'failed' ELSE 'sent' END, 0, ''
            FROM generate_series(1, %s) g
            """,
            [tenant_ids, tenant_ids, count],
        )
        cursor.execute("ANALYZE billing_usageevent")


def listed_ids(response) -> list[int]:  # noqa: ANN001
    return [int(value) for value in re.findall(r'name="_selected_action" value="(\d+)"', response.content.decode())]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?meter_status__exact=failed",
        "?feature__exact=chat",
        "?model=claude-haiku-4-5",
        "?since=2020-01-01",
        "?q=acme",
        "?q=scale:77",
        "?o=1",
    ],
)
def test_no_ledger_view_reads_the_whole_ledger(operator_client, acme, globex, query):
    ledger_insert([acme.tenant.pk, globex.tenant.pk], 20_000)
    first = operator_client.get(CHANGELIST + query)
    assert first.status_code == 200
    found = re.search(r'<a href="([^"]*)" class="keyset-next">', first.content.decode())
    with CaptureQueriesContext(connection) as captured:
        operator_client.get(CHANGELIST + query)
        if found:
            operator_client.get(CHANGELIST + html.unescape(found.group(1)))

    statements = [q["sql"] for q in captured if "billing_usageevent" in q["sql"] and not q["sql"].startswith("EXPLAIN")]
    assert statements
    assert not any("DISTINCT" in sql.upper() for sql in statements)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            if "COUNT(" in sql.upper():
                assert "LIMIT 10001" in sql.upper(), sql
                continue
            assert "Seq Scan on billing_usageevent" not in plan, (sql, plan)


def test_search_finds_a_tenants_rows_or_one_request_exactly(operator_client, acme, globex):
    ledger_insert([acme.tenant.pk, globex.tenant.pk], 40)

    by_key = listed_ids(operator_client.get(CHANGELIST, {"q": "scale:7"}))
    by_tenant = listed_ids(operator_client.get(CHANGELIST, {"q": "acme"}))

    assert list(UsageEvent.objects.filter(id__in=by_key).values_list("request_key", flat=True)) == ["scale:7"]
    assert set(UsageEvent.objects.filter(id__in=by_tenant).values_list("tenant_id", flat=True)) == {acme.tenant.pk}


def test_the_model_filter_lists_the_ledgers_models(operator_client, acme, globex):
    ledger_insert([acme.tenant.pk], 10)

    page = operator_client.get(CHANGELIST).content.decode()

    assert "?model=claude-haiku-4-5" in page and "?model=claude-sonnet-4-6" in page
    assert "Show counts" not in page
