"""Before each LLM call: the tenant's request rate and its plan's token allowance (both transports)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.db.models import OuterRef, Subquery

from billing.models import TenantUsagePeriod
from billing.services.usage import current_tenant_id, period_start
from core.exceptions import ApplicationError

# Indirection so tests can pin the clock of the per-minute window without patching time.time.
_clock = time.time


def _rate_limit(tenant_id: int) -> None:
    limit = settings.TENANT_RATE_LIMIT_PER_MINUTE
    if not limit:
        return
    now = _clock()
    window = int(now // 60)
    key = f"strata:rate:{tenant_id}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    if count > limit:
        raise ApplicationError(
            f"Too many AI requests for this organisation; the limit is {limit} a minute.",
            code="rate_limited",
            status=429,
            extra={"retry_after": 60 - int(now % 60)},
        )


def quota_check(*, feature: str, model: str) -> None:
    """Raise 429 ``rate_limited`` or 402 ``quota_exceeded`` / ``model_not_allowed`` before a call.

    One cache counter and one indexed query (the plan joined to this period's running total):
    no scan of the usage ledger.
    """
    from tenants.models import Tenant

    tenant_id = current_tenant_id()
    _rate_limit(tenant_id)
    used = TenantUsagePeriod.objects.filter(tenant_id=OuterRef("pk"), period_start=period_start()).values("tokens_used")[:1]
    row = (
        Tenant.objects.filter(pk=tenant_id)
        .values("plan_id", "plan__name", "plan__included_tokens", "plan__hard_limit", "plan__allowed_models")
        .annotate(used=Subquery(used))
        .first()
    )
    if row is None or row["plan_id"] is None:
        return
    allowed, name = row["plan__allowed_models"], row["plan__name"]
    if allowed and model not in allowed and model != "offline":
        raise ApplicationError(f"The {name} plan does not include the model {model}.", code="model_not_allowed", status=402)
    included = row["plan__included_tokens"]
    if row["plan__hard_limit"] and (row["used"] or 0) >= included:
        raise ApplicationError(
            f"This organisation has used its {included:,} tokens for this period. Upgrade the plan to continue.",
            code="quota_exceeded",
            status=402,
            extra={"used": row["used"], "included": included},
        )
