"""Reads of billing data that need care: usage per tenant for the operator admin in one query."""

from __future__ import annotations

from typing import TypeVar

from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from billing.models import TenantUsagePeriod
from billing.services.usage import period_start

_Q = TypeVar("_Q", bound=QuerySet)


def tenants_with_period_usage(queryset: _Q) -> _Q:
    """Annotate tenants with ``tokens_this_period`` and ``cost_this_period`` (running totals, no ledger scan)."""
    period = TenantUsagePeriod.objects.filter(tenant_id=OuterRef("pk"), period_start=period_start())
    return queryset.annotate(
        tokens_this_period=Coalesce(Subquery(period.values("tokens_used")[:1]), Value(0)),
        cost_this_period=Coalesce(Subquery(period.values("cost_micros")[:1]), Value(0)),
    )
