"""Suspending and reactivating a tenant (operator actions, billing), and closing its open sockets."""

from __future__ import annotations

import functools

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from tenants.models import Tenant


def tenant_channel_group(schema_name: str) -> str:
    """The channel-layer group of every open socket on a tenant's host (the schema keeps tenants apart)."""
    return f"tenant.{schema_name}"


def tenant_connections_close(*, schema_name: str) -> None:
    """Tell every process's open sockets of this tenant to close (consumers answer with 4403).

    With the in-memory channel layer this reaches the sockets of this process; with REDIS_URL,
    those of every process. A socket the message misses still closes on its next frame, when
    the consumer re-checks the tenant's status."""
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(tenant_channel_group(schema_name), {"type": "tenant.closed"})


@transaction.atomic
def tenant_suspend(*, tenant: Tenant, reason: str = "Suspended by an operator.") -> Tenant:
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspended_reason = reason[:200]
    tenant.save(update_fields=["status", "suspended_reason"])
    # After commit: a rolled-back suspension must not close anyone's socket. Robust: the
    # suspension stands even if the channel layer is down (sockets then close on their next frame).
    transaction.on_commit(functools.partial(tenant_connections_close, schema_name=tenant.schema_name), robust=True)
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
