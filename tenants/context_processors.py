"""Template context for tenant pages: whether the person may manage people and keys (for the nav)."""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest

from tenants.selectors import membership_get


def membership(request: HttpRequest) -> dict[str, Any]:
    @functools.cache
    def can_administer() -> bool:
        # Called by a template that asks, so pages that do not pay no query.
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public or not request.user.is_authenticated:
            return False
        found = membership_get(user=request.user, tenant=tenant)
        return found is not None and found.can_administer

    return {"tenant_can_administer": can_administer}
