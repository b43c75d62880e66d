"""Reads about tenants, memberships, invitations and API keys."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from core.models import User
from tenants.models import ApiKey, Invitation, Membership, Tenant


def membership_get(*, user: User, tenant: Tenant) -> Membership | None:
    return Membership.objects.for_tenant(tenant).filter(user=user).first()


def tenant_get_by_subdomain(*, subdomain: str) -> Tenant | None:
    return Tenant.objects.filter(subdomain=subdomain).first()


def tenants_with_member_counts() -> QuerySet[Tenant]:
    return Tenant.objects.exclude(schema_name="public").annotate(member_count=Count("memberships", distinct=True))


def members_list(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.for_tenant(tenant).select_related("user").order_by("user__email")


def invitations_open(*, tenant: Tenant) -> QuerySet[Invitation]:
    """Invitations not yet accepted or revoked (expired ones included: they can be re-sent)."""
    return (
        Invitation.objects.for_tenant(tenant)
        .filter(accepted_at__isnull=True, revoked_at__isnull=True)
        .select_related("invited_by")
        .order_by("-created", "-id")
    )


def api_keys_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.for_tenant(tenant).filter(revoked__isnull=True).select_related("created_by")


def api_key_id_of(*, user: User | None) -> int | None:
    """The tenant API key a user row stands for (each key acts through a user of its own), or None.
    The key authentication loads the key with its user, so for programs this costs no query."""
    if user is None:
        return None
    try:
        return user.api_key.pk
    except ApiKey.DoesNotExist:
        return None
