"""A person's workspaces, and the one-time hand-off that signs them in on another of them.

Sessions live in each tenant's schema, so a session on one workspace's host means nothing on the
next. The hand-off carries it over once: a one-time sign-in token (tenants.sign_in_tokens) for the
workspace, naming the one it came from, valid for ``HANDOFF_MAX_AGE`` seconds. Redeeming it checks
a current membership and that workspace's sign-in rules and spends it, under a lock on the
person's row so that two concurrent uses cannot both succeed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Lower

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, audit_record
from tenants.mfa.services import SSO_SESSION_KEY
from tenants.models import Membership, Tenant
from tenants.sign_in_tokens import SignInTokens, TokenExpired, TokenInvalid
from tenants.sso.services import sso_password_check

# The browser follows the link as soon as the switch page loads: a minute is plenty.
HANDOFF_MAX_AGE = 60
_TOKENS = SignInTokens(salt="strata.tenants.workspace-handoff", one_time=True)


def workspaces_list(*, user: User) -> QuerySet[Membership]:
    """The person's memberships, with their workspaces, by name; a closed workspace is gone for
    its members (its host says so), so it is not offered."""
    return (
        Membership.objects.filter(user=user)
        .exclude(tenant__status=Tenant.Status.CLOSED)
        .select_related("tenant")
        .order_by(Lower("tenant__name"), "tenant_id")
    )


@dataclass(frozen=True)
class WorkspaceSwitch:
    tenant: Tenant
    url: str


def workspace_switch(*, user: User, source: Tenant, subdomain: str, session: Any = None) -> WorkspaceSwitch:
    """Where a person signed in on ``source`` goes to reach their workspace ``subdomain``: a hand-off
    that signs them in there, or that workspace's login page when it must see them sign in itself
    (it enforces single sign-on for their role, or this session came from ``source``'s identity
    provider, which does not vouch for them anywhere else). A workspace they are not a member of,
    unknown or closed is ``not_found`` alike: nobody learns which workspaces exist."""
    membership = workspaces_list(user=user).filter(tenant__subdomain=subdomain).first()
    if membership is None:
        raise ApplicationError("You are not a member of that workspace.", code="not_found", status=404)
    target = membership.tenant
    if target.pk == source.pk:
        return WorkspaceSwitch(target, target.url)
    if (session is not None and session.get(SSO_SESSION_KEY)) or _sso_required(user=user, tenant=target):
        return WorkspaceSwitch(target, f"{target.url}login/")
    return WorkspaceSwitch(target, workspace_handoff_issue(user=user, source=source, target=target))


def workspace_handoff_issue(*, user: User, source: Tenant, target: Tenant, at: dt.datetime | None = None) -> str:
    """The one-time link that signs ``user`` in on ``target`` (``at``: when it counts as issued)."""
    token = _TOKENS.issue(user=user, tenant_id=target.pk, at=at, s=source.pk)
    return f"{target.url}workspaces/enter/{token}/"


@dataclass(frozen=True)
class Handoff:
    user: User
    source_subdomain: str

    @property
    def audit_changes(self) -> dict[str, str]:
        """What the sign-in's audit entry says beside the person (tenants.audit records ``login()``)."""
        return {"method": "workspace_switch", "from": self.source_subdomain}


def workspace_handoff_redeem(*, tenant: Tenant, token: str, request: Any = None) -> Handoff:
    """The person a hand-off link signs in on ``tenant``, its use spent; the caller makes the session
    with ``login()``, which the audit log records. A refusal (an ApplicationError saying why) is
    recorded too, without naming anyone: the token may be another workspace's."""
    try:
        return _redeem(tenant=tenant, token=token)
    except ApplicationError as refusal:
        audit_record(
            tenant=tenant,
            action=Action.LOGIN_FAILED,
            actor_label="workspace switch",
            changes={"method": "workspace_switch", "reason": refusal.code},
            request=request,
        )
        raise


def _redeem(*, tenant: Tenant, token: str) -> Handoff:
    invalid = ApplicationError(
        "That link to this workspace is not valid any more: log in here.", code="handoff_invalid", status=403
    )
    with transaction.atomic():
        try:
            user, data = _TOKENS.read(token=token, tenant_id=tenant.pk, max_age=HANDOFF_MAX_AGE, lock=True)
        except TokenExpired:
            raise ApplicationError(
                "That link to this workspace has expired: log in here.", code="handoff_expired", status=403
            ) from None
        except TokenInvalid:
            raise invalid from None
        if not Membership.objects.for_tenant(tenant).filter(user=user).exists():
            raise ApplicationError(f"You are no longer a member of {tenant.name}.", code="membership_gone", status=403)
        if _sso_required(user=user, tenant=tenant):
            raise ApplicationError(
                f"{tenant.name} signs in with single sign-on: use “Sign in with SSO”.", code="sso_required", status=403
            )
        # Spent now, before the session exists: a second use waits for this lock, then differs.
        _TOKENS.spend(user)
    source = Tenant.objects.filter(pk=data.get("s")).values_list("subdomain", flat=True).first()
    return Handoff(user=user, source_subdomain=source or "")


def _sso_required(*, user: User, tenant: Tenant) -> bool:
    try:
        sso_password_check(user=user, tenant=tenant)
    except ApplicationError:
        return True
    return False
