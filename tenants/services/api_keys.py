"""Tenant API keys: made, checked and revoked here.

Keys come from djangorestframework-api-key's ``KeyGenerator``: ``<prefix>.<secret>`` with an
8-character prefix (shown in lists, used to find the row) and a 32-character secret; only the
SHA-512 of the whole key is kept, compared in constant time. Each key gets a user row of its own
(no password, no membership) so that what a program does is attributed to the key.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.db import transaction
from django.utils import timezone
from rest_framework_api_key.crypto import KeyGenerator

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, audit_record
from tenants.models import ApiKey, Tenant
from tenants.services.status import access_revoke_on_commit

_generator = KeyGenerator(prefix_length=8, secret_key_length=32)
# last_used is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


@transaction.atomic
def api_key_create(*, tenant: Tenant, created_by: User | None, name: str, scope: str) -> tuple[ApiKey, str]:
    """A new key and its secret value, which is never stored and cannot be shown again."""
    name = (name or "").strip()
    if not name:
        raise ApplicationError(
            "Give the key a name.", code="invalid", status=400, extra={"fields": {"name": ["Required."]}}
        )
    if scope not in ApiKey.Scope.values:
        raise ApplicationError(
            "The scope is 'read' or 'write'.", code="invalid", status=400, extra={"fields": {"scope": ["Invalid."]}}
        )
    key, prefix, hashed = _generator.generate()
    identity = User(email=f"key-{uuid.uuid4().hex}@api-keys.invalid", full_name=f"API key: {name}"[:150])
    identity.set_unusable_password()
    identity.save()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name[:100],
        scope=scope,
        prefix=prefix,
        hashed_key=hashed,
        user=identity,
        created_by=created_by,
    )
    audit_record(
        tenant=tenant,
        action=Action.API_KEY_CREATED,
        actor=created_by,
        target=f"{api_key.name} ({prefix})",
        changes={"scope": scope},
    )
    return api_key, key


@transaction.atomic
def api_key_revoke(*, tenant: Tenant, api_key_id: int, actor: User | None = None) -> None:
    """Revoke a key for good: requests with it get 401 from now on, and its answers in flight stop.
    The row stays (the ledger points at it). ``actor`` is who did it, for the audit log."""
    api_key = ApiKey.objects.select_for_update().for_tenant(tenant).filter(id=api_key_id, revoked__isnull=True).first()
    if api_key is None:
        raise ApplicationError("No such API key.", code="not_found", status=404)
    api_key.revoked = timezone.now()
    api_key.save(update_fields=["revoked"])
    User.objects.filter(pk=api_key.user_id).update(is_active=False)
    access_revoke_on_commit(schema_name=tenant.schema_name, user_id=api_key.user_id)  # its answers and sockets stop
    audit_record(tenant=tenant, action=Action.API_KEY_REVOKED, actor=actor, target=str(api_key))


def api_key_authenticate(*, raw: str, tenant: Tenant | None) -> ApiKey | None:
    """The live key ``raw`` names on ``tenant``'s host, or None (unknown, wrong secret, revoked,
    another tenant's, or the public host). Notes when it was last used."""
    prefix, dot, secret = (raw or "").strip().partition(".")
    if not dot or not prefix or not secret or tenant is None or getattr(tenant, "is_public", True):
        return None
    api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not _generator.verify(raw.strip(), api_key.hashed_key):
        return None
    if api_key.revoked is not None or api_key.tenant_id != tenant.pk or not api_key.user.is_active:
        return None
    now = timezone.now()
    if api_key.last_used is None or now - api_key.last_used >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used=now)
        api_key.last_used = now
    return api_key
