"""Reads about tenants and memberships."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from core.models import User
from tenants.models import Membership, Tenant


def membership_get(*, user: User, tenant: Tenant) -> Membership | None:
    return Membership.objects.filter(user=user, tenant=tenant).first()


def tenant_get_by_subdomain(*, subdomain: str) -> Tenant | None:
    return Tenant.objects.filter(subdomain=subdomain).first()


def tenants_with_member_counts() -> QuerySet[Tenant]:
    return Tenant.objects.exclude(schema_name="public").annotate(member_count=Count("memberships", distinct=True))
