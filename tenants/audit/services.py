"""Writing, verifying and pruning the audit log: ``audit_record`` is the one way in.

Every entry of a tenant carries the hash of the tenant's previous entry. Writers of one tenant are
serialised by a transaction-scoped advisory lock taken in the caller's transaction, so two
concurrent writers never both chain onto the same predecessor (the second waits until the first
commits or rolls back, then reads the real last entry). The entry commits or rolls back with the
caller's work: an action that did not happen is not logged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from core.models import User
from core.platform.client import client_ip
from tenants.audit.middleware import request_ip
from tenants.audit.models import Action, ActorType, AuditEntry, AuditPrune
from tenants.models import ApiKey, Tenant

__all__ = [
    "Action",
    "ActorType",
    "Operator",
    "audit_record",
    "audit_prune",
    "audit_verify",
    "entry_hash",
    "AUDIT_LOCK_NAMESPACE",
]

# The first key of pg_advisory_xact_lock(int4, int4); the second is the tenant id. Any constant
# that no other lock in Strata uses ("audt").
AUDIT_LOCK_NAMESPACE = 0x61756474
# Email domain of the user rows API keys act through (tenants.services.api_keys).
_KEY_USER_DOMAIN = "@api-keys.invalid"


@dataclass(frozen=True)
class Operator:
    """A platform operator acting from the operators' admin (``user`` is the staff account)."""

    user: User | None = None


Actor = User | ApiKey | Operator | None


def audit_record(
    *,
    tenant: Tenant,
    action: str,
    actor: Actor = None,
    target: str = "",
    changes: dict[str, Any] | None = None,
    request: Any = None,
    ip: str | None = None,
    actor_label: str = "",
) -> AuditEntry:
    """Append one entry to ``tenant``'s log, in the caller's transaction.

    ``actor`` is a User, an ApiKey, an ``Operator(user)``, or None: then it is taken from
    ``request`` (its API key, else its signed-in user, else nobody) or, with no request, Strata
    itself. ``actor_label`` overrides the label (a failed sign-in names the address tried).
    ``changes`` is ``{"field": [before, after]}`` for edits, or any JSON-able detail. The IP is
    ``ip``, else ``request``'s, else the current request's (``AuditContextMiddleware``), always by
    the client-address rule of the throttles (X-Forwarded-For only behind TRUSTED_PROXY_COUNT proxies).

    It holds the tenant's log lock until the caller's transaction ends: call it after the rows the
    transaction locks, never before (a writer holding the lock and waiting for a row that another
    writer holds while it waits for the lock would deadlock).
    """
    actor_type, actor_id, label = _actor(actor, request)
    changes_json = json.dumps(changes, cls=DjangoJSONEncoder) if changes is not None else None
    address = _address(ip or (client_ip(request) if request is not None else request_ip.get()))
    with transaction.atomic():
        with connection.cursor() as cursor:
            # The address and the changes as PostgreSQL will give them back (inet's canonical text,
            # jsonb's numbers and key order), so that the hash computed now is the one a read computes.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s), host(%s::inet), (%s::jsonb)::text",
                [AUDIT_LOCK_NAMESPACE, _lock_key(tenant.pk), address, changes_json],
            )
            _, address, stored_changes = cursor.fetchone()
        entry = AuditEntry(
            tenant_id=tenant.pk,
            tenant_subdomain=tenant.subdomain,
            at=timezone.now(),
            actor_type=actor_type,
            actor_id=actor_id,
            actor_label=_text(actor_label or label, 254),
            action=str(action),
            target=_text(target, 300),
            ip=address,
            changes=json.loads(stored_changes) if stored_changes is not None else None,
            prev_hash=_chain_head(tenant.pk),
        )
        entry.hash = entry_hash(entry)
        entry.save(force_insert=True)
    return entry


def _address(value: str | None) -> str | None:
    """A valid IP address (without an IPv6 zone), or None: the log never refuses an entry over it."""
    candidate = (value or "").split("%", 1)[0].strip()
    try:
        return str(ipaddress.ip_address(candidate)) if candidate else None
    except ValueError:
        return None


def _text(value: Any, limit: int) -> str:
    # PostgreSQL text cannot hold NUL; a tried e-mail or a title is whatever a client sent.
    return str(value).replace("\x00", "")[:limit]


def _lock_key(tenant_id: int) -> int:
    # int4 range: ids beyond it share a lock with another tenant, which only costs a wait.
    return int(tenant_id) % 2**31


def _chain_head(tenant_id: int) -> str:
    last = AuditEntry.objects.filter(tenant_id=tenant_id).order_by("-id").values_list("hash", flat=True).first()
    if last is not None:
        return last
    mark = AuditPrune.objects.filter(tenant_id=tenant_id).order_by("-id").values_list("through_hash", flat=True).first()
    return mark or ""


def _actor(actor: Actor, request: Any) -> tuple[str, int | None, str]:
    if actor is None and request is not None:
        auth = getattr(request, "auth", None)
        if isinstance(auth, ApiKey):
            actor = auth
        else:
            user = getattr(request, "user", None)
            actor = user if user is not None and user.is_authenticated else None
        if actor is None:
            return ActorType.ANONYMOUS, None, ""
    if actor is None:
        return ActorType.SYSTEM, None, "Strata"
    if isinstance(actor, Operator):
        user = actor.user
        return ActorType.OPERATOR, (user.pk if user else None), (user.email if user else "operator")
    if isinstance(actor, ApiKey):
        return ActorType.KEY, actor.pk, f"{actor.name} ({actor.prefix})"
    if actor.email.endswith(_KEY_USER_DOMAIN):
        key = ApiKey.objects.filter(user=actor).first()
        if key is not None:
            return ActorType.KEY, key.pk, f"{key.name} ({key.prefix})"
    return ActorType.USER, actor.pk, actor.email


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 of the entry's canonical JSON (sorted keys, UTC microseconds, ``prev_hash`` included)."""
    at = entry.at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload = {
        "tenant_id": entry.tenant_id,
        "tenant_subdomain": entry.tenant_subdomain,
        "at": at,
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "actor_label": entry.actor_label,
        "action": entry.action,
        "target": entry.target,
        "ip": entry.ip or None,
        "changes": entry.changes,
        "prev_hash": entry.prev_hash,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    tenant_id: int
    checked: int
    bad_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_id is None


def audit_verify(*, tenant_id: int) -> VerifyResult:
    """Walk ``tenant_id``'s chain oldest first; the first entry whose hash or link is wrong, if any.

    The oldest surviving entry must link to the newest retention mark (or to nothing if retention
    never ran), so a pruned prefix verifies and a prefix deleted any other way does not.
    """
    expected = (
        AuditPrune.objects.filter(tenant_id=tenant_id).order_by("-id").values_list("through_hash", flat=True).first()
        or ""
    )
    checked = 0
    for entry in AuditEntry.objects.filter(tenant_id=tenant_id).order_by("id").iterator(chunk_size=2000):
        if entry.prev_hash != expected:
            return VerifyResult(tenant_id, checked, entry.pk, "its link does not match the previous entry")
        if entry_hash(entry) != entry.hash:
            return VerifyResult(tenant_id, checked, entry.pk, "its content does not match its hash")
        expected = entry.hash
        checked += 1
    return VerifyResult(tenant_id, checked)


def audit_tenant_ids() -> list[int]:
    entries = set(AuditEntry.objects.values_list("tenant_id", flat=True).distinct())
    marks = set(AuditPrune.objects.values_list("tenant_id", flat=True).distinct())
    return sorted(entries | marks)


def audit_prune(*, now: dt.datetime | None = None, days: int | None = None) -> int:
    """Delete entries older than the retention period (AUDIT_RETENTION_DAYS), tenant by tenant,
    leaving a mark of where each chain was cut. The only delete the database allows: the trigger
    lets a DELETE through only in a transaction that set ``strata.audit_prune_before``, and only for
    rows older than it."""
    days = settings.AUDIT_RETENTION_DAYS if days is None else days
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    total = 0
    tenant_ids = AuditEntry.objects.filter(at__lt=cutoff).values_list("tenant_id", flat=True).distinct()
    for tenant_id in list(tenant_ids):
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [AUDIT_LOCK_NAMESPACE, _lock_key(tenant_id)])
                cursor.execute("SELECT set_config('strata.audit_prune_before', %s, true)", [cutoff.isoformat()])
            # A prefix of the chain only: stop at the first entry not older than the cutoff, so an
            # entry whose clock ran behind its successor's never leaves a hole in the middle.
            first_kept = (
                AuditEntry.objects.filter(tenant_id=tenant_id, at__gte=cutoff)
                .order_by("id")
                .values_list("id", flat=True)
                .first()
            )
            doomed = AuditEntry.objects.filter(tenant_id=tenant_id, at__lt=cutoff)
            if first_kept is not None:
                doomed = doomed.filter(id__lt=first_kept)
            last = doomed.order_by("-id").values("id", "hash").first()
            if last is None:
                continue
            deleted, _ = doomed.delete()
            AuditPrune.objects.create(
                tenant_id=tenant_id,
                at=timezone.now(),
                through_id=last["id"],
                through_hash=last["hash"],
                deleted=deleted,
            )
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('strata.audit_prune_before', '', true)")
            total += deleted
    return total
