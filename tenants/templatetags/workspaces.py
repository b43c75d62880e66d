"""``{% other_workspaces as others %}``: the navigation's switcher, for a person in several workspaces."""

from __future__ import annotations

from typing import Any

from django import template

from tenants.models import Membership
from tenants.switch.services import workspaces_list

register = template.Library()


@register.simple_tag(takes_context=True)
def other_workspaces(context: dict[str, Any]) -> list[Membership]:
    """The signed-in person's memberships in workspaces other than the host's (one query, on the
    pages that show the switcher only)."""
    request = context.get("request")
    tenant = getattr(request, "tenant", None)
    user = getattr(request, "user", None)
    if tenant is None or tenant.is_public or user is None or not user.is_authenticated:
        return []
    return [membership for membership in workspaces_list(user=user) if membership.tenant_id != tenant.pk]
