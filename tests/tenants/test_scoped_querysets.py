"""Public rows are scoped to a tenant by their queryset (``for_tenant``), never by a hand filter."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from billing.models import AllowanceReservation, Subscription, TenantUsagePeriod, UsageEvent
from billing.services import period_start
from tenants.models import ApiKey, Domain, Invitation, Membership
from tenants.services.api_keys import api_key_create
from tests.billing.conftest import record_usage

pytestmark = pytest.mark.django_db


def _rows_of_both(acme, globex) -> None:  # noqa: ANN001
    for world in (acme, globex):
        record_usage(world.tenant, tokens=10)
        AllowanceReservation.objects.create(
            tenant=world.tenant, period_start=period_start(), feature="chat", model="x", expires_at=timezone.now()
        )
        Invitation.objects.create(
            tenant=world.tenant, email=f"new@{world.tenant.subdomain}.test", expires=timezone.now() + dt.timedelta(1)
        )
        api_key_create(tenant=world.tenant, created_by=world.owner, name="ci", scope=ApiKey.Scope.READ)


@pytest.mark.parametrize(
    "model", [UsageEvent, TenantUsagePeriod, Subscription, AllowanceReservation, Membership, ApiKey, Invitation, Domain]
)
def test_for_tenant_gives_that_tenants_public_rows_only(acme, globex, model) -> None:  # noqa: ANN001
    _rows_of_both(acme, globex)

    by_tenant = model.objects.for_tenant(acme.tenant)
    by_id = model.objects.for_tenant(acme.tenant.pk)

    assert by_tenant.exists()
    assert {row.tenant_id for row in by_tenant} == {acme.tenant.pk}
    assert set(by_id) == set(by_tenant) == set(model.objects.filter(tenant=acme.tenant))


def test_for_tenant_chains_with_other_filters(acme) -> None:  # noqa: ANN001
    owners = Membership.objects.filter(role=Membership.Role.OWNER).for_tenant(acme.tenant)

    assert [membership.user for membership in owners] == [acme.owner]
