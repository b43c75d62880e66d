"""Roles and memberships: the one place where who-may-change-whom is decided.

Every entry point (the members API, the members page, the tenant admin's forms, the account page)
calls these functions, so the rules hold everywhere: owners and admins manage people; only owners
make owners or change an owner; nobody raises their own role; the last owner can be neither
demoted nor removed, nor leave. Owner rows are locked while a change is decided, so two owners
demoting each other at the same moment cannot leave the organisation without one.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, audit_record
from tenants.models import Membership, Tenant
from tenants.services.status import access_revoke_on_commit

Role = Membership.Role
_RANK: dict[str, int] = {Role.MEMBER: 0, Role.ADMIN: 1, Role.OWNER: 2}


def actor_role(*, tenant: Tenant, actor: Any) -> str | None:
    """The role ``actor`` acts with in ``tenant``: their membership's, or owner for a platform
    operator (superuser) in the tenant admin; None for anyone else."""
    if actor is None or not getattr(actor, "is_authenticated", False):
        return None
    membership = Membership.objects.for_tenant(tenant).filter(user=actor).only("role").first()
    if membership is not None:
        return membership.role
    return Role.OWNER if actor.is_superuser else None


def role_grant_check(*, role_of_actor: str | None, role: str) -> None:
    """Raise unless an actor with ``role_of_actor`` may give someone ``role`` (invite or change to it)."""
    if role not in _RANK:
        raise ApplicationError(f"Unknown role '{role}'.", code="invalid_role", status=400)
    if role_of_actor not in (Role.OWNER, Role.ADMIN):
        raise _not_a_manager()
    if role == Role.OWNER and role_of_actor != Role.OWNER:
        raise ApplicationError("Only owners can make someone an owner.", code="owner_required", status=403)


def _owners_locked(tenant: Tenant) -> int:
    """Lock every owner row (in id order, so two changes never deadlock) and count them. Taken
    before the row being changed, so concurrent changes to owners run one after the other."""
    owners = Membership.objects.select_for_update().for_tenant(tenant).filter(role=Role.OWNER).order_by("id")
    return len(list(owners.values_list("id", flat=True)))


def _last_owner_error(doing: str) -> ApplicationError:
    return ApplicationError(
        f"The last owner cannot {doing}: make someone else an owner first.", code="last_owner", status=400
    )


def _locked(tenant: Tenant, membership_id: int) -> Membership:
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .for_tenant(tenant)
        .filter(id=membership_id)
        .first()
    )
    if membership is None:
        raise ApplicationError("No such member.", code="not_found", status=404)
    return membership


def _role_change_refusal(
    *, role_of_actor: str | None, actor: User, membership: Membership, role: str, owners: int
) -> ApplicationError | None:
    try:
        role_grant_check(role_of_actor=role_of_actor, role=role)
    except ApplicationError as exc:
        return exc
    if membership.role == role:
        return None
    if membership.role == Role.OWNER and role_of_actor != Role.OWNER:
        return ApplicationError("Only owners can change an owner's role.", code="owner_required", status=403)
    if membership.user_id == actor.pk and _RANK[role] > _RANK[membership.role]:
        return ApplicationError("You cannot raise your own role.", code="permission_denied", status=403)
    if membership.role == Role.OWNER and owners <= 1:
        return _last_owner_error("be given another role")
    return None


def _not_a_manager() -> ApplicationError:
    return ApplicationError(
        "Only owners and admins of this organisation may do this.", code="permission_denied", status=403
    )


def _remove_refusal(*, role_of_actor: str | None, membership: Membership, owners: int) -> ApplicationError | None:
    if role_of_actor not in (Role.OWNER, Role.ADMIN):
        return _not_a_manager()
    if membership.role == Role.OWNER and role_of_actor != Role.OWNER:
        return ApplicationError("Only owners can remove an owner.", code="owner_required", status=403)
    if membership.role == Role.OWNER and owners <= 1:
        return _last_owner_error("be removed")
    return None


def membership_role_change_check(*, tenant: Tenant, actor: User, membership: Membership, role: str) -> None:
    """Raise what ``membership_role_change`` would refuse, without changing anything (for forms)."""
    owners = Membership.objects.for_tenant(tenant).filter(role=Role.OWNER).count()
    refusal = _role_change_refusal(
        role_of_actor=actor_role(tenant=tenant, actor=actor),
        actor=actor,
        membership=membership,
        role=role,
        owners=owners,
    )
    if refusal is not None:
        raise refusal


def membership_remove_check(*, tenant: Tenant, actor: User, membership: Membership) -> None:
    """Raise what ``membership_remove`` would refuse, without removing anyone (for forms)."""
    owners = Membership.objects.for_tenant(tenant).filter(role=Role.OWNER).count()
    refusal = _remove_refusal(
        role_of_actor=actor_role(tenant=tenant, actor=actor), membership=membership, owners=owners
    )
    if refusal is not None:
        raise refusal


@transaction.atomic
def membership_role_change(*, tenant: Tenant, actor: User, membership_id: int, role: str) -> Membership:
    """Give a member another role, or raise ApplicationError (403 not allowed, 400 last owner)."""
    role_of_actor = actor_role(tenant=tenant, actor=actor)
    role_grant_check(role_of_actor=role_of_actor, role=role)
    owners = _owners_locked(tenant)
    membership = _locked(tenant, membership_id)
    refusal = _role_change_refusal(
        role_of_actor=role_of_actor, actor=actor, membership=membership, role=role, owners=owners
    )
    if refusal is not None:
        raise refusal
    if membership.role != role:
        audit_record(
            tenant=tenant,
            action=Action.MEMBER_ROLE_CHANGED,
            actor=actor,
            target=membership.user.email,
            changes={"role": [membership.role, role]},
        )
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, tenant: Tenant, actor: User, membership_id: int) -> None:
    """Remove someone from the organisation (their account stays; so do the API keys they made)."""
    role_of_actor = actor_role(tenant=tenant, actor=actor)
    if role_of_actor not in (Role.OWNER, Role.ADMIN):
        raise _not_a_manager()
    removed = _membership_delete(tenant=tenant, role_of_actor=role_of_actor, membership_id=membership_id)
    audit_record(tenant=tenant, action=Action.MEMBER_REMOVED, actor=actor, target=removed.user.email)


@transaction.atomic
def membership_deprovision(*, tenant: Tenant, membership_id: int) -> None:
    """Removal by the tenant's identity provider (SCIM): it acts with the authority of the owner who
    made its token, so only the last-owner rule can refuse."""
    _membership_delete(tenant=tenant, role_of_actor=Role.OWNER, membership_id=membership_id)


def _membership_delete(*, tenant: Tenant, role_of_actor: str, membership_id: int) -> Membership:
    owners = _owners_locked(tenant)
    membership = _locked(tenant, membership_id)
    refusal = _remove_refusal(role_of_actor=role_of_actor, membership=membership, owners=owners)
    if refusal is not None:
        raise refusal
    membership.delete()
    access_revoke_on_commit(schema_name=tenant.schema_name, user_id=membership.user_id)  # their answers stop
    return membership


@transaction.atomic
def membership_leave(*, tenant: Tenant, user: User) -> None:
    """Leave the organisation (the account stays, with its other organisations)."""
    owners = _owners_locked(tenant)
    membership = Membership.objects.select_for_update().for_tenant(tenant).filter(user=user).first()
    if membership is None:
        raise ApplicationError("You are not a member of this organisation.", code="not_found", status=404)
    if membership.role == Role.OWNER and owners <= 1:
        raise _last_owner_error("leave")
    membership.delete()
    access_revoke_on_commit(schema_name=tenant.schema_name, user_id=user.pk)
    audit_record(
        tenant=tenant, action=Action.MEMBER_LEFT, actor=user, target=user.email, changes={"role": membership.role}
    )
