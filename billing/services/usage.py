"""The usage ledger: one row per LLM call, plus a running per-period total for fast quota checks."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from billing.models import Subscription, TenantUsagePeriod, UsageEvent
from core.platform.sql_names import Inserted, column, table
from tenants.models import Tenant


def period_start(now: dt.datetime | None = None) -> dt.date:
    """Usage periods are calendar months in UTC."""
    now = now or timezone.now()
    return now.astimezone(dt.UTC).date().replace(day=1)


def next_period_start(start: dt.date) -> dt.date:
    return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def cost_micros(
    *, model: str, input_tokens: int, output_tokens: int, cache_creation_input_tokens: int, cache_read_input_tokens: int
) -> int:
    # Prices are US dollars per million tokens, which is exactly micro-dollars per token.
    prices = settings.MODEL_PRICES.get(model) or settings.MODEL_PRICES.get("default", {})
    return round(
        input_tokens * prices.get("input", 0)
        + output_tokens * prices.get("output", 0)
        + cache_creation_input_tokens * prices.get("cache_write", 0)
        + cache_read_input_tokens * prices.get("cache_read", 0)
    )


def usage_record(
    *,
    user_id: int | None,
    feature: str,
    model: str,
    usage: Any,
    request_key: str,
    tenant_id: int,
    api_key_id: int | None = None,
    status: str = "ok",
    latency_ms: int = 0,
    billable: bool = True,
) -> UsageEvent:
    """Write one ledger row and bump the period total, atomically with the caller's transaction.

    ``usage`` is an ``ai.llm.Usage`` (its ``as_dict()`` gives the four token counts). ``request_key`` must be
    unique within the tenant (it is the Stripe meter event identifier once prefixed with the
    tenant id). The period total is one ``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``,
    so concurrent calls never lose an increment, even the first ones of a period. ``api_key_id``
    names the tenant API key that caused the usage, when a program did. The caller names the tenant
    (``tenant_id``): a schema name says nothing once a released signup's name is reused.
    """
    counts = usage.as_dict()
    if not billable:  # a call no model served (the offline provider): seen by operators, never charged
        counts = dict.fromkeys(counts, 0)
    total = sum(counts.values())
    cost = cost_micros(model=model, **counts) if billable else 0
    # No savepoint of our own: inside the caller's transaction a failure rolls the whole call back.
    with transaction.atomic(savepoint=False):
        event = _inserted().create(
            tenant_id=tenant_id,
            user_id=user_id,
            api_key_id=api_key_id,
            feature=feature,
            model=model,
            total_tokens=total,
            cost_micros=cost,
            request_key=request_key,
            status=status,
            latency_ms=latency_ms,
            meter_status=UsageEvent.MeterStatus.PENDING if total else UsageEvent.MeterStatus.SKIPPED,
            **counts,
        )
        _period_total_add(tenant_id=tenant_id, start=period_start(event.created), total=total, cost=cost)
    return event


@functools.cache
def _inserted() -> Inserted[UsageEvent]:
    return Inserted(UsageEvent)


_PERIOD_UPSERT = """
    INSERT INTO {table} ({tenant}, {period_start}, {tokens_used}, {cost_micros})
    VALUES (%s, %s, %s, %s)
    ON CONFLICT ({tenant}, {period_start}) DO UPDATE
    SET {tokens_used} = {table}.{tokens_used} + EXCLUDED.{tokens_used},
        {cost_micros} = {table}.{cost_micros} + EXCLUDED.{cost_micros}
"""


@functools.cache
def _period_upsert_sql() -> str:
    fields = ("tenant", "period_start", "tokens_used", "cost_micros")
    return _PERIOD_UPSERT.format(
        table=table(TenantUsagePeriod), **{name: column(TenantUsagePeriod, name) for name in fields}
    )


def _period_total_add(*, tenant_id: int, start: dt.date, total: int, cost: int) -> None:
    # The ORM has no "add on conflict"; get_or_create + update would need a retry path for the race.
    with connection.cursor() as cursor:
        cursor.execute(_period_upsert_sql(), [tenant_id, start, total, cost])


def tokens_used(*, tenant_id: int, start: dt.date | None = None) -> int:
    row = (
        TenantUsagePeriod.objects.for_tenant(tenant_id)
        .filter(period_start=start or period_start())
        .values_list("tokens_used", flat=True)
        .first()
    )
    return row or 0


@dataclass(frozen=True)
class UsageSummary:
    period_start: dt.date
    period_end: dt.date
    used: int
    included: int
    remaining: int
    hard_limit: bool
    cost_micros: int
    by_feature: dict[str, dict[str, int]]


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def usage_summary(*, tenant: Tenant) -> UsageSummary:
    start = period_start()
    end = next_period_start(start)
    rows = (
        UsageEvent.objects.for_tenant(tenant)
        .filter(created__gte=_utc_midnight(start), created__lt=_utc_midnight(end))
        .values("feature")
        .annotate(
            tokens=Sum("total_tokens"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost=Sum("cost_micros"),
        )
        .order_by("feature")
    )
    by_feature = {
        row["feature"]: {
            "tokens": row["tokens"],
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"],
            "cost_micros": row["cost"],
        }
        for row in rows
    }
    period = TenantUsagePeriod.objects.for_tenant(tenant).filter(period_start=start).first()
    used = period.tokens_used if period else 0
    subscription = Subscription.objects.for_tenant(tenant).select_related("plan").first()
    plan = subscription.plan if subscription else None
    included = plan.included_tokens if plan else 0
    return UsageSummary(
        period_start=start,
        period_end=end,
        used=used,
        included=included,
        remaining=max(0, included - used),
        hard_limit=plan.hard_limit if plan else True,
        cost_micros=period.cost_micros if period else 0,
        by_feature=by_feature,
    )
