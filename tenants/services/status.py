"""Suspending and reactivating a tenant (operator actions, billing)."""

from __future__ import annotations

from django.db import transaction

from tenants.models import Tenant


@transaction.atomic
def tenant_suspend(*, tenant: Tenant, reason: str = "Suspended by an operator.") -> Tenant:
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspended_reason = reason[:200]
    tenant.save(update_fields=["status", "suspended_reason"])
    return tenant


@transaction.atomic
def tenant_reactivate(*, tenant: Tenant) -> Tenant:
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspended_reason = ""
    tenant.save(update_fields=["status", "suspended_reason"])
    return tenant


@transaction.atomic
def tenant_delete(*, tenant: Tenant) -> None:
    """Delete the tenant, its schema (every document and conversation in it) and its rows in public;
    its subdomain is free again. The people's accounts stay: they are global."""
    tenant.delete(force_drop=True)
