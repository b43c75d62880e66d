"""Provisioning by a tenant's identity provider: its token, and the people and groups it manages.

Whoever the provider turns off loses this tenant, and only this tenant: their membership goes
(through ``membership_deprovision``, so every credential of theirs — session, login token,
socket, answer in flight — stops working here, while the account and its other organisations
stay), their sessions on this host are deleted, and the API keys they made here are revoked.
Turned on again, they get their membership back with the role they had; keys stay revoked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework_api_key.crypto import KeyGenerator

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, audit_record
from tenants.models import ApiKey, Membership, Tenant
from tenants.scim.models import ScimGroup, ScimToken, ScimUser
from tenants.services.api_keys import api_key_revoke
from tenants.services.members import membership_deprovision

Role = Membership.Role
_generator = KeyGenerator(prefix_length=8, secret_key_length=40)
# Who the audit log names for what the provider does (its token is no person).
AUDIT_ACTOR = "Identity provider (SCIM)"

# Groups named for a role (case-insensitive) grant it; any other group grants nothing. Owners are
# made in Strata by an owner, never by a provider, and a provider never changes an owner's role.
ROLE_GROUPS: dict[str, str] = {
    "admin": Role.ADMIN,
    "admins": Role.ADMIN,
    "member": Role.MEMBER,
    "members": Role.MEMBER,
}


@dataclass(frozen=True)
class ScimTokenIssued:
    token: ScimToken
    raw: str


@transaction.atomic
def scim_token_create(*, tenant: Tenant, created_by: User | None) -> ScimTokenIssued:
    """A new token for the tenant's identity provider, which replaces the previous one at once (the
    old value is refused from this commit on). The value is never stored and cannot be shown again."""
    raw, prefix, hashed = _generator.generate()
    previous = ScimToken.objects.select_for_update().for_tenant(tenant).values_list("prefix", flat=True).first()
    token, _ = ScimToken.objects.update_or_create(
        tenant=tenant,
        defaults={
            "prefix": prefix,
            "hashed_key": hashed,
            "created_by": created_by,
            "created": timezone.now(),
            "last_used": None,
        },
    )
    audit_record(
        tenant=tenant,
        action=Action.SCIM_CHANGED,
        actor=created_by,
        target="SCIM token",
        changes={"token": [previous, prefix]},
    )
    return ScimTokenIssued(token=token, raw=raw)


@transaction.atomic
def scim_token_revoke(*, tenant: Tenant, actor: User | None) -> None:
    """Revoke the tenant's token: provisioning stops until an owner makes a new one."""
    token = ScimToken.objects.select_for_update().for_tenant(tenant).first()
    if token is None:
        raise ApplicationError("This organisation has no SCIM token.", code="not_found", status=404)
    token.delete()
    audit_record(
        tenant=tenant,
        action=Action.SCIM_CHANGED,
        actor=actor,
        target="SCIM token",
        changes={"token": [token.prefix, None]},
    )


def scim_token_authenticate(*, raw: str, tenant: Tenant | None) -> ScimToken | None:
    """The token ``raw`` names if it is ``tenant``'s (never another tenant's, never on the public host)."""
    prefix, dot, secret = (raw or "").strip().partition(".")
    if not dot or not prefix or not secret or tenant is None or getattr(tenant, "is_public", True):
        return None
    token = ScimToken.objects.filter(prefix=prefix).first()
    if token is None or token.tenant_id != tenant.pk or not _generator.verify(raw.strip(), token.hashed_key):
        return None
    now = timezone.now()
    if token.last_used is None or (now - token.last_used).total_seconds() >= 60:
        ScimToken.objects.filter(pk=token.pk).update(last_used=now)
    return token


def _conflict(message: str) -> ApplicationError:
    return ApplicationError(message, code="uniqueness", status=409)


@transaction.atomic
def scim_user_save(*, tenant: Tenant, scim_user: ScimUser) -> ScimUser:
    """Store a SCIM User as the provider sent it (create or replace), and give or take the
    person's access to the tenant when ``active`` says so."""
    if scim_user.pk is None:
        return _scim_user_create(tenant=tenant, scim_user=scim_user)
    stored = ScimUser.objects.select_for_update().for_tenant(tenant).filter(pk=scim_user.pk).first()
    if stored is None:
        raise ApplicationError("No such user.", code="not_found", status=404)
    if _user_name_taken(tenant=tenant, user_name=scim_user.user_name, other_than=scim_user.pk):
        raise _conflict(f"The userName '{scim_user.user_name}' is taken in this organisation.")
    scim_user.save()
    if stored.active and not scim_user.active:
        _access_end(tenant=tenant, scim_user=scim_user, why="deactivated")
    elif scim_user.active and not stored.active:
        _access_restore(tenant=tenant, scim_user=scim_user)
    return scim_user


def _user_name_taken(*, tenant: Tenant, user_name: str, other_than: int | None = None) -> bool:
    same = ScimUser.objects.for_tenant(tenant).filter(user_name__iexact=user_name)
    return (same.exclude(pk=other_than) if other_than is not None else same).exists()


def _scim_user_create(*, tenant: Tenant, scim_user: ScimUser) -> ScimUser:
    if _user_name_taken(tenant=tenant, user_name=scim_user.user_name):
        raise _conflict(f"A user with userName '{scim_user.user_name}' already exists in this organisation.")
    email = scim_user.email.strip().lower()
    account = User.objects.filter(email__iexact=email).first()
    if account is None:
        account = User(email=email, full_name=_full_name(scim_user))
        account.set_unusable_password()  # they sign in with SSO, or set one by password reset
        account.save()
    elif ScimUser.objects.for_tenant(tenant).filter(user=account).exists():
        raise _conflict(f"The account {email} is already provisioned in this organisation.")
    scim_user.tenant = tenant
    scim_user.user = account
    membership = Membership.objects.for_tenant(tenant).filter(user=account).first()
    if membership is not None:
        scim_user.role = membership.role
    scim_user.save()
    if not scim_user.active:
        _access_end(tenant=tenant, scim_user=scim_user, why="created inactive")
    else:
        if membership is None:
            Membership.objects.create(tenant=tenant, user=account, role=scim_user.role)
        _audit(
            tenant, Action.SCIM_USER_PROVISIONED, scim_user, {"userName": scim_user.user_name, "role": scim_user.role}
        )
    return scim_user


def _audit(tenant: Tenant, action: str, scim_user: ScimUser, changes: dict[str, object]) -> None:
    audit_record(tenant=tenant, action=action, actor_label=AUDIT_ACTOR, target=scim_user.user.email, changes=changes)


def _full_name(scim_user: ScimUser) -> str:
    name = scim_user.display_name or f"{scim_user.given_name} {scim_user.family_name}".strip()
    return name[:150]


@transaction.atomic
def scim_user_delete(*, tenant: Tenant, scim_user: ScimUser) -> None:
    """The provider deleted the person: their access here ends as for ``active: false``, and the
    tenant forgets what the provider told it. The account stays (it is global)."""
    stored = ScimUser.objects.select_for_update().for_tenant(tenant).filter(pk=scim_user.pk).first()
    if stored is None:
        raise ApplicationError("No such user.", code="not_found", status=404)
    if stored.active:
        _access_end(tenant=tenant, scim_user=stored, why="deleted")
    stored.delete()


def _access_end(*, tenant: Tenant, scim_user: ScimUser, why: str) -> None:
    membership = Membership.objects.for_tenant(tenant).filter(user_id=scim_user.user_id).first()
    if membership is not None:
        scim_user.role = membership.role  # what a reactivation gives back
        scim_user.save(update_fields=["role"])
        # Refuses the last owner (400 last_owner); tells sockets and answers after commit.
        membership_deprovision(tenant=tenant, membership_id=membership.pk)
    keys = ApiKey.objects.for_tenant(tenant).filter(created_by_id=scim_user.user_id, revoked__isnull=True)
    key_ids = list(keys.values_list("id", flat=True))
    for key_id in key_ids:
        api_key_revoke(tenant=tenant, api_key_id=key_id)
    _sessions_end(tenant=tenant, user_id=scim_user.user_id)
    _audit(tenant, Action.SCIM_USER_DEPROVISIONED, scim_user, {"why": why, "api_keys_revoked": len(key_ids)})


def _sessions_end(*, tenant: Tenant, user_id: int) -> None:
    """Delete the person's sessions on this tenant's host (they live in its schema); their sessions
    on other hosts are other tenants' business. Decoding each live session is the only way to
    find whose it is; deprovisioning is rare enough for that."""
    with tenant_context(tenant):
        live = Session.objects.filter(expire_date__gt=timezone.now())
        theirs = [s.pk for s in live.iterator() if s.get_decoded().get("_auth_user_id") == str(user_id)]
        Session.objects.filter(pk__in=theirs).delete()


def _access_restore(*, tenant: Tenant, scim_user: ScimUser) -> None:
    Membership.objects.get_or_create(tenant=tenant, user_id=scim_user.user_id, defaults={"role": scim_user.role})
    _audit(tenant, Action.SCIM_USER_PROVISIONED, scim_user, {"why": "reactivated", "role": scim_user.role})


def _group_role(display_name: str) -> str | None:
    return ROLE_GROUPS.get(display_name.strip().lower())


def _roles_sync(*, tenant: Tenant, scim_user_ids: set[int]) -> None:
    """Give each person the highest role their groups grant (member with none); owners keep theirs."""
    people = ScimUser.objects.for_tenant(tenant).filter(pk__in=scim_user_ids).prefetch_related("groups")
    for scim_user in people:
        granted = {_group_role(group.display_name) for group in scim_user.groups.all()}
        role = Role.ADMIN if Role.ADMIN in granted else Role.MEMBER
        membership = Membership.objects.for_tenant(tenant).filter(user_id=scim_user.user_id).first()
        current = membership.role if membership is not None else scim_user.role
        if current == Role.OWNER or current == role:
            continue
        if membership is not None:
            membership.role = role
            membership.save(update_fields=["role"])
        scim_user.role = role
        scim_user.save(update_fields=["role"])
        _audit(tenant, Action.MEMBER_ROLE_CHANGED, scim_user, {"role": [current, role]})


def scim_group_members(*, tenant: Tenant, scim_ids: Sequence[str]) -> list[ScimUser]:
    """The tenant's SCIM users with these ids, or a 400 naming one that is not (another tenant's
    users do not exist here)."""
    found = {u.scim_id: u for u in ScimUser.objects.for_tenant(tenant).filter(scim_id__in=scim_ids)}
    missing = [scim_id for scim_id in scim_ids if scim_id not in found]
    if missing:
        raise ApplicationError(
            f"No user with id '{missing[0]}' in this organisation.", code="invalid_value", status=400
        )
    return [found[scim_id] for scim_id in scim_ids]


@transaction.atomic
def scim_group_save(*, tenant: Tenant, scim_group: ScimGroup, members: Sequence[str] | None = None) -> ScimGroup:
    """Store a group (create or replace) and, unless ``members`` is None, make those SCIM ids its
    members. Everyone who joined or left it, or whose group was renamed, gets their role again."""
    taken = ScimGroup.objects.for_tenant(tenant).filter(display_name__iexact=scim_group.display_name)
    if taken.exclude(pk=scim_group.pk).exists():
        raise _conflict(f"A group named '{scim_group.display_name}' already exists in this organisation.")
    before: set[int] = set()
    if scim_group.pk is not None:
        before = set(scim_group.members.values_list("pk", flat=True))
    scim_group.tenant = tenant
    scim_group.save()
    after = before
    if members is not None:
        after = {scim_user.pk for scim_user in scim_group_members(tenant=tenant, scim_ids=members)}
        scim_group.members.set(after)
    _roles_sync(tenant=tenant, scim_user_ids=before | after)
    return scim_group


@transaction.atomic
def scim_group_delete(*, tenant: Tenant, scim_group: ScimGroup) -> None:
    members = set(scim_group.members.values_list("pk", flat=True))
    ScimGroup.objects.for_tenant(tenant).filter(pk=scim_group.pk).delete()
    _roles_sync(tenant=tenant, scim_user_ids=members)
