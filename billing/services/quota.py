"""Before each LLM call: the tenant's request rate and its plan's token allowance (both transports)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

from billing.services.usage import current_tenant_id, period_start, tokens_used
from core.exceptions import ApplicationError


def _rate_limit(tenant_id: int) -> None:
    limit = settings.TENANT_RATE_LIMIT_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
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
            extra={"retry_after": 60 - int(time.time() % 60)},
        )


def quota_check(*, feature: str, model: str) -> None:
    """Raise 429 ``rate_limited`` or 402 ``quota_exceeded`` / ``model_not_allowed`` before a call.

    Reads one row (the period total) and one cache key: no scan of the usage ledger.
    """
    from tenants.models import Tenant

    tenant_id = current_tenant_id()
    _rate_limit(tenant_id)
    tenant = Tenant.objects.select_related("plan").only("id", "plan").get(pk=tenant_id)
    plan = tenant.plan
    if plan is None:
        return
    if plan.allowed_models and model not in plan.allowed_models and model != "offline":
        raise ApplicationError(f"The {plan.name} plan does not include the model {model}.", code="model_not_allowed", status=402)
    if plan.hard_limit and tokens_used(tenant_id=tenant_id, start=period_start()) >= plan.included_tokens:
        raise ApplicationError(
            f"This organisation has used its {plan.included_tokens:,} tokens for this period. Upgrade the plan to continue.",
            code="quota_exceeded",
            status=402,
        )
