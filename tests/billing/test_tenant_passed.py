"""Billing is told its tenant by the caller: nothing is derived from the connection's schema."""

from __future__ import annotations

import pytest

from ai.llm import Usage
from billing.models import AllowanceReservation, Plan, TenantUsagePeriod
from billing.services import period_start, quota_check, usage_record
from billing.services.reservations import allowance_reserve

pytestmark = pytest.mark.django_db


def test_the_quota_check_reads_the_plan_of_the_tenant_passed_on_any_schema(acme) -> None:  # noqa: ANN001
    Plan.objects.filter(pk=acme.tenant.subscription.plan_id).update(hard_limit=True, included_tokens=1_000)

    # No tenant_context: the connection is on the public schema.
    allowance = quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")

    assert (allowance.included, allowance.remaining) == (1_000, 1_000)


def test_a_reservation_and_its_usage_land_on_the_tenant_passed(acme, globex) -> None:  # noqa: ANN001
    Plan.objects.filter(pk=acme.tenant.subscription.plan_id).update(hard_limit=True, included_tokens=1_000)
    allowance = quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6", count_request=False)

    reservation = allowance_reserve(
        tenant=acme.tenant,
        allowance=allowance,
        feature="chat",
        model="claude-sonnet-4-6",
        prompt_tokens=100,
        max_tokens=200,
        user_id=None,
        api_key_id=None,
    )
    usage_record(
        tenant_id=acme.tenant.pk, user_id=None, feature="chat", model="x", usage=Usage(input_tokens=7), request_key="k"
    )

    assert AllowanceReservation.objects.get(pk=reservation.id).tenant_id == acme.tenant.pk
    period = TenantUsagePeriod.objects.for_tenant(acme.tenant).get(period_start=period_start())
    assert (period.tokens_used, period.reserved_tokens) == (7, 300)
    assert not TenantUsagePeriod.objects.for_tenant(globex.tenant).filter(tokens_used__gt=0).exists()


def test_billing_has_no_schema_to_tenant_lookup_left() -> None:
    from billing.services import usage

    assert not hasattr(usage, "current_tenant_id")
    assert not hasattr(usage, "_tenant_id_for_schema")
