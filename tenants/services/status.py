"""Suspending, reactivating, closing, restoring and deleting a tenant, and telling work in flight when access ends.

Access to a tenant ends for everyone on it (suspension, deletion) or for one person or key
(removal, leaving, a revoked key). ``access_revoke`` tells every process, after commit: running
answers read the time of the newest revocation from the cache (Redis with REDIS_URL) about twice
a second (ai.chat.answers) and open sockets get it through the tenant's channel-layer
group. Both treat it as a hint and ask the database (``access_allowed``) before stopping anything,
so a revocation undone meanwhile stops nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Iterable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from core.platform.exceptions import ApplicationError
from tenants.models import ApiKey, Membership, Tenant

logger = logging.getLogger(__name__)

# Long enough for every running answer to read a revocation (they do twice a second), with room
# for a cache that was briefly unreachable.
REVOCATION_TTL_SECONDS = 600


def tenant_channel_group(schema_name: str) -> str:
    """The channel-layer group of every open socket on a tenant's host (the schema keeps tenants apart)."""
    return f"tenant.{schema_name}"


def _revocation_key(schema_name: str, user_id: int | None) -> str:
    return f"strata:revoked:{schema_name}" if user_id is None else f"strata:revoked:{schema_name}:{user_id}"


def access_revoke(*, schema_name: str, user_id: int | None = None) -> None:
    """Access to the tenant ended, for everyone (``user_id`` None) or for one user (a person or a
    key's identity): tell running answers and open sockets on every process. Call it after commit.

    With the in-memory cache and channel layer this reaches this process; with REDIS_URL, every
    process. What it misses still ends: a socket on its next frame (re-authorised every time)."""
    try:
        cache.set(_revocation_key(schema_name, user_id), time.time(), timeout=REVOCATION_TTL_SECONDS)
    except Exception:  # the sockets below must still hear of it
        logger.warning("could not record the revocation of %s in the cache", schema_name, exc_info=True)
    layer = get_channel_layer()
    if layer is not None:
        event = {"type": "access.revoked", "user_id": user_id}
        async_to_sync(layer.group_send)(tenant_channel_group(schema_name), event)


def access_revoke_on_commit(*, schema_name: str, user_id: int | None = None) -> None:
    """``access_revoke`` once the current transaction commits (never for a rolled-back change).
    Robust: the change stands even if the cache or the channel layer is down."""
    transaction.on_commit(functools.partial(access_revoke, schema_name=schema_name, user_id=user_id), robust=True)


def access_revocations(*, grants: Iterable[tuple[str, int]]) -> dict[tuple[str, int], float]:
    """For each (schema, user): when access was last revoked for that user or the whole tenant
    (time.time()), if within REVOCATION_TTL_SECONDS. One cache read for them all."""
    grants = set(grants)
    keys = {_revocation_key(schema, None) for schema, _ in grants}
    keys.update(_revocation_key(schema, user_id) for schema, user_id in grants)
    found = cache.get_many(list(keys))
    latest: dict[tuple[str, int], float] = {}
    for schema, user_id in grants:
        times = [found.get(_revocation_key(schema, None)), found.get(_revocation_key(schema, user_id))]
        known = [float(at) for at in times if at is not None]
        if known:
            latest[(schema, user_id)] = max(known)
    return latest


def access_allowed(*, tenant_id: int, user_id: int) -> bool:
    """Sync: may this user still use the tenant? It is active, and the user is an active member
    or the identity of one of its live API keys."""
    with schema_context(get_public_schema_name()):
        if not Tenant.objects.filter(pk=tenant_id, status=Tenant.Status.ACTIVE).exists():
            return False
        member = Membership.objects.for_tenant(tenant_id).filter(user_id=user_id, user__is_active=True)
        key = ApiKey.objects.for_tenant(tenant_id).filter(user_id=user_id, revoked__isnull=True, user__is_active=True)
        return member.exists() or key.exists()


def _refuse_closed(tenant: Tenant) -> None:
    # A closed tenant leaves that state only by tenant_restore (or its deletion after the deadline).
    if tenant.status == Tenant.Status.CLOSED:
        raise ApplicationError("This workspace is closed; restore it first.", code="workspace_closed", status=409)


@transaction.atomic
def tenant_suspend(*, tenant: Tenant, reason: str = "Suspended by an operator.") -> Tenant:
    _refuse_closed(tenant)
    tenant.status = Tenant.Status.SUSPENDED
    tenant.suspended_reason = reason[:200]
    tenant.save(update_fields=["status", "suspended_reason"])
    access_revoke_on_commit(schema_name=tenant.schema_name)
    return tenant


@transaction.atomic
def tenant_reactivate(*, tenant: Tenant) -> Tenant:
    _refuse_closed(tenant)
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspended_reason = ""
    tenant.save(update_fields=["status", "suspended_reason"])
    return tenant


@transaction.atomic
def _not_the_platform(tenant: Tenant) -> None:
    """The public tenant is the platform itself: its schema holds every tenant's public rows."""
    if tenant.schema_name == get_public_schema_name():
        raise ApplicationError(
            "The platform's own tenant cannot be closed or deleted.", code="platform_tenant", status=409
        )


def tenant_close(*, tenant: Tenant, delete_after: dt.datetime, now: dt.datetime | None = None) -> Tenant:
    """Close the tenant: nobody gets in any more (pages, API, sockets, running answers), its data
    stays until ``delete_after``. Whole workspace closing (jobs, billing, audit) is config.lifecycle's."""
    _not_the_platform(tenant)
    if tenant.status == Tenant.Status.CLOSED:
        raise ApplicationError("This workspace is already closed.", code="already_closed", status=409)
    tenant.status = Tenant.Status.CLOSED
    tenant.closed_at = now or timezone.now()
    tenant.delete_after = delete_after
    tenant.save(update_fields=["status", "closed_at", "delete_after"])
    access_revoke_on_commit(schema_name=tenant.schema_name)
    return tenant


@transaction.atomic
def tenant_restore(*, tenant: Tenant, now: dt.datetime | None = None) -> Tenant:
    """Open a closed tenant again, before its deadline; it comes back active."""
    if tenant.status != Tenant.Status.CLOSED:
        raise ApplicationError("This workspace is not closed.", code="not_closed", status=409)
    if tenant.delete_after is not None and tenant.delete_after <= (now or timezone.now()):
        raise ApplicationError(
            "The grace period of this workspace is over; it can no longer be restored.", code="grace_over", status=409
        )
    tenant.status = Tenant.Status.ACTIVE
    tenant.suspended_reason = ""
    tenant.closed_at = None
    tenant.delete_after = None
    tenant.save(update_fields=["status", "suspended_reason", "closed_at", "delete_after"])
    return tenant


@transaction.atomic
def tenant_delete(*, tenant: Tenant) -> None:
    """Delete a closed tenant: its schema (every document and conversation in it) and its rows in
    public; its subdomain is free again. The usage ledger and the audit log keep its id (they have
    no cascading relation to it), and the people's accounts stay: they are global.

    Only ``config.lifecycle`` calls it, after the grace period and once billing is settled."""
    _not_the_platform(tenant)
    if tenant.status != Tenant.Status.CLOSED:
        raise ApplicationError("Only a closed workspace can be deleted.", code="not_closed", status=409)
    access_revoke_on_commit(schema_name=tenant.schema_name)
    tenant.delete(force_drop=True)
