"""Reads of billing data that need care: usage per tenant for the operator admin in one query,
usage per day for the usage pages, and which plans customers may choose."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Count, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.models import Plan, Subscription, TenantUsagePeriod, UsageEvent
from billing.services.usage import next_period_start, period_start
from tenants.models import Tenant

_Q = TypeVar("_Q", bound=QuerySet)


def tenants_with_period_usage(queryset: _Q) -> _Q:
    """Annotate tenants with ``tokens_this_period`` and ``cost_this_period`` (running totals, no ledger scan)."""
    period = TenantUsagePeriod.objects.for_tenant(OuterRef("pk")).filter(period_start=period_start())
    return queryset.annotate(
        tokens_this_period=Coalesce(Subquery(period.values("tokens_used")[:1]), Value(0)),
        cost_this_period=Coalesce(Subquery(period.values("cost_micros")[:1]), Value(0)),
    )


def tenants_unpaid_abandoned(*, now: dt.datetime | None = None) -> list[int]:
    """Ids of the tenants still waiting for their first payment ``BILLING_PENDING_RELEASE_DAYS``
    after signup (config.lifecycle releases them). One whose owner opened a fresh Checkout in the
    last day is left alone: a Checkout Session lives 24 hours, so a payment may still come."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.BILLING_PENDING_RELEASE_DAYS)
    quiet_since = now - dt.timedelta(hours=24)
    return list(
        Tenant.objects.filter(
            status=Tenant.Status.PENDING_PAYMENT, created__lte=cutoff, subscription__updated__lte=quiet_since
        ).values_list("pk", flat=True)
    )


# --- plans customers may choose --------------------------------------------------------------


def plan_is_offered(plan: Plan) -> bool:
    """Whether customers may choose ``plan`` on this server.

    A free plan always; a paid plan only when it can actually be paid: Stripe is on and the plan
    has a Stripe price. Without Stripe, paid plans are offered only with DEBUG on, where signup
    activates them without payment (a local demo).
    """
    if not plan.is_public:
        return False
    if not plan.is_paid:
        return True
    if settings.STRIPE_SECRET_KEY:
        return bool(plan.stripe_price_id)
    return bool(settings.DEBUG)


def plans_offered() -> list[Plan]:
    return [plan for plan in Plan.objects.filter(is_public=True) if plan_is_offered(plan)]


def plans_unpriced() -> list[Plan]:
    """Public paid plans hidden from customers because they have no Stripe price (for operators)."""
    return list(Plan.objects.filter(is_public=True, monthly_price_cents__gt=0, stripe_price_id=""))


# --- usage per day, by feature and by person --------------------------------------------------

UNATTRIBUTED = "(no person)"


@dataclass(frozen=True)
class UsageReport:
    """One tenant's usage in one period, per day: what the usage page charts and exports."""

    period_start: dt.date
    period_end: dt.date  # exclusive: the first day of the next period
    days: list[dt.date]
    by_feature: dict[str, list[int]]
    by_person: dict[str, list[int]]
    feature_totals: dict[str, dict[str, int]]
    person_totals: dict[str, int]
    cumulative: list[int | None]  # running total per day, None after today
    included: int
    used: int
    cost_micros: int
    rows: list[dict[str, Any]]  # per day, feature and person: the CSV

    def chart_data(self, *, people: bool) -> dict[str, Any]:
        return {
            "days": [day.isoformat() for day in self.days],
            "by_feature": self.by_feature,
            "by_person": self.by_person if people else {},
            "cumulative": self.cumulative,
            "allowance": self.included,
            "used": self.used,
        }


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


API_KEY_ADDRESS = "@api-keys.invalid"  # an API key's placeholder account (tenants.services.api_keys)


def _person(email: str | None, name: str | None) -> str:
    """Who used tokens: the address, or for an API key its name ("API key: Nightly import")."""
    if email and email.endswith(API_KEY_ADDRESS) and name:
        return name
    return email or UNATTRIBUTED


def usage_report(*, tenant_id: int, start: dt.date | None = None, now: dt.datetime | None = None) -> UsageReport:
    """Tokens per day of the period that holds ``start`` (default: this one), in one grouped query."""
    now = now or timezone.now()
    start = period_start(_utc_midnight(start) if start else now)
    end = next_period_start(start)
    grouped = (
        UsageEvent.objects.for_tenant(tenant_id)
        .filter(created__gte=_utc_midnight(start), created__lt=_utc_midnight(end))
        .annotate(day=TruncDate("created", tzinfo=dt.UTC))
        .values("day", "feature", "user__email", "user__full_name")
        .annotate(
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            total_tokens=Sum("total_tokens"),
            cost_micros=Sum("cost_micros"),
            calls=Count("id"),
        )
        .order_by("day", "feature", "user__email")
    )
    rows: list[dict[str, Any]] = [dict(row) for row in grouped]
    days = [start + dt.timedelta(days=n) for n in range((end - start).days)]
    index = {day: n for n, day in enumerate(days)}
    by_feature: dict[str, list[int]] = {}
    by_person: dict[str, list[int]] = {}
    feature_totals: dict[str, dict[str, int]] = {}
    person_totals: dict[str, int] = {}
    daily = [0] * len(days)
    for row in rows:
        row["person"] = _person(row.pop("user__email"), row.pop("user__full_name"))
        n, tokens = index[row["day"]], row["total_tokens"]
        by_feature.setdefault(row["feature"], [0] * len(days))[n] += tokens
        by_person.setdefault(row["person"], [0] * len(days))[n] += tokens
        totals = feature_totals.setdefault(
            row["feature"], {"tokens": 0, "input_tokens": 0, "output_tokens": 0, "cost_micros": 0, "calls": 0}
        )
        for key in ("input_tokens", "output_tokens", "cost_micros", "calls"):
            totals[key] += row[key]
        totals["tokens"] += tokens
        person_totals[row["person"]] = person_totals.get(row["person"], 0) + tokens
        daily[n] += tokens
    today = now.astimezone(dt.UTC).date()
    running, cumulative = 0, []
    for day, tokens in zip(days, daily, strict=True):
        running += tokens
        cumulative.append(running if day <= today else None)
    subscription = Subscription.objects.for_tenant(tenant_id).select_related("plan").first()
    return UsageReport(
        period_start=start,
        period_end=end,
        days=days,
        by_feature=by_feature,
        by_person=dict(sorted(by_person.items(), key=lambda item: -sum(item[1]))),
        feature_totals=feature_totals,
        person_totals=dict(sorted(person_totals.items(), key=lambda item: -item[1])),
        cumulative=cumulative,
        included=subscription.plan.included_tokens if subscription else 0,
        used=sum(daily),
        cost_micros=sum(total["cost_micros"] for total in feature_totals.values()),
        rows=rows,
    )
