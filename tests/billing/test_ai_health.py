"""Operators see AI health across tenants (calls, errors, latency p50/p95, tokens per tenant, model
and day) from the public ledger only; offline answers leave a ledger row with no cost."""

from __future__ import annotations

import re

import pytest
from django_tenants.utils import tenant_context

from ai.llm import Usage
from ai.services.actions import agent_action_record
from billing.models import TenantUsagePeriod, UsageEvent
from billing.services import usage_record
from tests.conftest import host_client

HEALTH = "/admin/billing/usageevent/ai-health/"


@pytest.fixture
def operator_client(django_user_model, db):  # noqa: ANN001
    operator = django_user_model.objects.create_superuser("ops-health@example.com", "ops-Passw0rd!")
    client = host_client("localhost")
    client.force_login(operator)
    return client


def test_an_offline_answer_leaves_a_ledger_row_with_no_tokens_and_no_cost(acme):
    used_before = list(TenantUsagePeriod.objects.filter(tenant=acme.tenant).values_list("tokens_used", flat=True))
    with tenant_context(acme.tenant):
        action = agent_action_record(
            tenant=acme.tenant,
            agent_type="chat",
            user=acme.member,
            provider="offline",
            model="offline",
            input_prompt="Where is the parking?",
            output_text="From your documents: level -2.",
            usage=Usage(input_tokens=40, output_tokens=12),
            latency_ms=35,
        )

    event = UsageEvent.objects.get(tenant=acme.tenant, request_key=f"action:{action.pk}")
    assert (event.model, event.status, event.latency_ms) == ("offline", "ok", 35)
    assert (event.total_tokens, event.cost_micros, event.meter_status) == (0, 0, "skipped")
    assert action.input_tokens == 40  # the estimate stays on the action
    used_after = list(TenantUsagePeriod.objects.filter(tenant=acme.tenant).values_list("tokens_used", flat=True))
    assert sum(used_after) == sum(used_before)  # nothing counted against the allowance


def test_operators_see_calls_errors_latency_and_tokens_per_tenant_and_model(operator_client, acme, globex):
    for n in range(10):
        usage_record(
            tenant_id=acme.tenant.pk,
            user_id=None,
            feature="chat",
            model="claude-sonnet-4-6",
            usage=Usage(input_tokens=100, output_tokens=20),
            request_key=f"health:{n}",
            status="error" if n < 2 else "ok",
            latency_ms=100 * (n + 1),
        )
    usage_record(
        tenant_id=globex.tenant.pk,
        user_id=None,
        feature="summarise",
        model="claude-haiku-4-5",
        usage=Usage(input_tokens=7),
        request_key="health:g",
        latency_ms=70,
    )

    page = operator_client.get(HEALTH).content.decode()

    table = page.split('<table id="ai-health">', 1)[1]
    assert "acme" in table and "globex" in table
    acme_row = re.search(r"<td>acme</td><td>claude-sonnet-4-6</td>(.*?)</tr>", table).group(1)
    cells = re.findall(r"<td>(.*?)</td>", acme_row)
    assert cells == ["10", "2", "20 %", "0", "550 ms", "955 ms", "1200"]
    globex_row = re.search(r"<td>globex</td><td>claude-haiku-4-5</td>(.*?)</tr>", table).group(1)
    assert re.findall(r"<td>(.*?)</td>", globex_row)[:1] == ["1"]
    only_globex = operator_client.get(HEALTH, {"tenant": globex.tenant.pk}).content.decode()
    assert "<td>acme</td>" not in only_globex and "<td>globex</td>" in only_globex


def test_the_health_view_is_for_operators_only(acme):
    client = host_client("localhost")
    client.force_login(acme.owner)  # a tenant's owner, not staff
    response = client.get(HEALTH)

    assert response.status_code == 302
