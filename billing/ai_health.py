"""The operators' view of AI health across tenants: calls, errors, latency p50/p95 and tokens per
tenant, model and day, from the public usage ledger only (counts, never prompt text)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Aggregate, Count, FloatField, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import UsageEvent
from tenants.models import Tenant


class Percentile(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


@dataclass(frozen=True)
class HealthRow:
    day: dt.date
    tenant_id: int
    tenant: str
    model: str
    calls: int
    errors: int
    interrupted: int
    p50_ms: int
    p95_ms: int
    tokens: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


def ai_health(*, days: int = 7, tenant_id: int | None = None, model: str = "") -> list[HealthRow]:
    """Per day, tenant and model over the last ``days`` days (newest day first), from the ledger's
    created index; embedding calls are left out (no latency of their own)."""
    since = timezone.now() - dt.timedelta(days=days)
    rows = UsageEvent.objects.filter(created__gte=since).exclude(feature=UsageEvent.Feature.EMBED)
    if tenant_id is not None:
        rows = rows.filter(tenant_id=tenant_id)
    if model:
        rows = rows.filter(model=model)
    grouped = (
        rows.annotate(day=TruncDate("created"))
        .values("day", "tenant_id", "model")
        .annotate(
            calls=Count("id"),
            errors=Count("id", filter=Q(status="error")),
            interrupted=Count("id", filter=Q(status="interrupted")),
            p50=Percentile("latency_ms", fraction=0.5),
            p95=Percentile("latency_ms", fraction=0.95),
            tokens=Sum("total_tokens"),
        )
        .order_by("-day", "tenant_id", "model")
    )
    names = dict(Tenant.objects.values_list("id", "subdomain"))
    return [
        HealthRow(
            day=row["day"],
            tenant_id=row["tenant_id"],
            tenant=names.get(row["tenant_id"], f"deleted tenant #{row['tenant_id']}"),
            model=row["model"],
            calls=row["calls"],
            errors=row["errors"],
            interrupted=row["interrupted"],
            p50_ms=round(row["p50"] or 0),
            p95_ms=round(row["p95"] or 0),
            tokens=row["tokens"] or 0,
        )
        for row in grouped
    ]
