"""Invitations: an owner or admin invites an e-mail with a role; the link in the e-mail makes the
account (or, for an existing account, adds the membership once its owner has logged in).

The link's token is made by the job that sends the e-mail and only its SHA-256 is stored, so the
token exists nowhere but in the message. Nothing the inviter sees depends on whether the address
already has a Strata account: that is told only to whoever opens the link (the address's owner).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.models import User
from core.platform.counters import window_count, window_seconds_left
from core.platform.exceptions import ApplicationError
from core.platform.jobs import job_defer
from core.platform.mail import mail_recipient_allowed, mail_send
from tenants.audit.services import Action, audit_record
from tenants.models import Invitation, Membership, Tenant, tenant_url
from tenants.services.members import actor_role, role_grant_check

INVITATION_SEND_JOB = "tenants.invitation_send"


def token_hash(token: str) -> str:
    # The token is 256 random bits: a plain SHA-256 cannot be reversed or guessed.
    return hashlib.sha256(token.encode()).hexdigest()


def email_normalise(email: str) -> str:
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise ApplicationError(
            "Enter a valid e-mail address.", code="invalid", status=400, extra={"fields": {"email": exc.messages}}
        ) from exc
    return email


def _rate_limit(tenant: Tenant) -> None:
    """INVITATIONS_PER_TENANT_PER_HOUR invitations (new or resent) per tenant, whoever sends them."""
    limit = settings.INVITATIONS_PER_TENANT_PER_HOUR
    if not limit:
        return
    now = timezone.now().timestamp()
    count = window_count(f"strata:invitations:{tenant.pk}", window_seconds=3600, now=now)
    if count > limit:
        raise ApplicationError(
            f"This organisation has sent {limit} invitations this hour; try again later.",
            code="throttled",
            status=429,
            extra={"retry_after": window_seconds_left(window_seconds=3600, now=now)},
        )


def _expiry() -> dt.datetime:
    return timezone.now() + dt.timedelta(days=settings.INVITATION_TTL_DAYS)


@transaction.atomic
def invitation_create(*, tenant: Tenant, actor: User, email: str, role: str) -> Invitation:
    """Invite ``email`` with ``role``; the e-mail goes out from a job once this commits."""
    role_grant_check(role_of_actor=actor_role(tenant=tenant, actor=actor), role=role)
    email = email_normalise(email)
    # Telling the inviter that this address is already one of *their* members reveals nothing
    # they cannot see on the members page; nothing is said about accounts elsewhere.
    if Membership.objects.for_tenant(tenant).filter(user__email__iexact=email).exists():
        raise ApplicationError("This person is already a member.", code="already_member", status=400)
    open_invitation = (
        Invitation.objects.select_for_update()
        .for_tenant(tenant)
        .filter(email=email, accepted_at__isnull=True, revoked_at__isnull=True)
        .first()
    )
    if open_invitation is not None and open_invitation.status == "pending":
        raise ApplicationError(
            "This address has an invitation waiting; resend it instead.", code="already_invited", status=400
        )
    _rate_limit(tenant)
    if open_invitation is not None:  # expired: it gives way to the new one
        open_invitation.revoked_at = timezone.now()
        open_invitation.save(update_fields=["revoked_at"])
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                tenant=tenant, email=email, role=role, invited_by=actor, expires=_expiry()
            )
    except IntegrityError as exc:  # the same address invited at the same moment
        raise ApplicationError(
            "This address has an invitation waiting; resend it instead.", code="already_invited", status=400
        ) from exc
    job_defer(INVITATION_SEND_JOB, invitation_id=invitation.pk)
    audit_record(tenant=tenant, action=Action.INVITATION_CREATED, actor=actor, target=email, changes={"role": role})
    return invitation


def _open_invitation_locked(tenant: Tenant, invitation_id: int) -> Invitation:
    invitation = Invitation.objects.select_for_update().for_tenant(tenant).filter(id=invitation_id).first()
    if invitation is None or invitation.accepted_at or invitation.revoked_at:
        raise ApplicationError("No such open invitation.", code="not_found", status=404)
    return invitation


@transaction.atomic
def invitation_resend(*, tenant: Tenant, actor: User, invitation_id: int) -> Invitation:
    """Send a new link, valid for another INVITATION_TTL_DAYS; the previous link stops working."""
    invitation = _open_invitation_locked(tenant, invitation_id)
    role_grant_check(role_of_actor=actor_role(tenant=tenant, actor=actor), role=invitation.role)
    _rate_limit(tenant)
    invitation.token_hash = ""
    invitation.sent_at = None  # until the new link has gone out
    invitation.expires = _expiry()
    invitation.save(update_fields=["token_hash", "sent_at", "expires"])
    job_defer(INVITATION_SEND_JOB, invitation_id=invitation.pk)
    return invitation


@transaction.atomic
def invitation_revoke(*, tenant: Tenant, actor: User, invitation_id: int) -> None:
    if actor_role(tenant=tenant, actor=actor) not in (Membership.Role.OWNER, Membership.Role.ADMIN):
        raise ApplicationError(
            "Only owners and admins of this organisation may do this.", code="permission_denied", status=403
        )
    invitation = _open_invitation_locked(tenant, invitation_id)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(tenant=tenant, action=Action.INVITATION_REVOKED, actor=actor, target=invitation.email)


def invitation_send(*, invitation_id: int) -> None:
    """Job body: make the link's token, keep its hash, e-mail the link, then mark it sent.

    Does nothing for an invitation that was accepted, revoked or already sent. ``sent_at`` is set
    only once the mail server took the message: a run that failed or died before that (its token
    reached nobody) leaves it unset, and the job's retry makes a fresh token and sends.
    """
    with transaction.atomic():
        invitation = (
            Invitation.objects.select_for_update(of=("self",))
            .select_related("tenant", "invited_by")
            .filter(id=invitation_id)
            .first()
        )
        if invitation is None or not invitation.is_open or invitation.sent_at:
            return
        if not mail_recipient_allowed(to=invitation.email, kind="invitation"):
            return
        token = secrets.token_urlsafe(32)
        # Kept before sending, so the link works the moment the message arrives.
        invitation.token_hash = token_hash(token)
        invitation.save(update_fields=["token_hash"])
    _invitation_mail(invitation, token, invitation.invited_by)
    # A resend meanwhile replaced the token: this message's link is stale, the resend's job sends.
    Invitation.objects.filter(pk=invitation.pk, token_hash=invitation.token_hash).update(sent_at=timezone.now())


def _invitation_mail(invitation: Invitation, token: str, inviter: User | None) -> None:
    mail_send(
        to=invitation.email,
        template="tenants/email/invitation",
        context={
            "tenant_name": invitation.tenant.name,
            "tenant_url": tenant_url(invitation.tenant.subdomain),
            "link": f"{tenant_url(invitation.tenant.subdomain)}invite/{token}/",
            "inviter": (inviter.full_name or inviter.email) if inviter else "",
            "role": invitation.get_role_display().lower(),
            "expires": invitation.expires,
            # Only the address's owner reads this: it says whether to log in or to make an account.
            "has_account": User.objects.filter(email__iexact=invitation.email).exists(),
        },
    )


def invitation_for_token(*, tenant: Tenant, token: str) -> Invitation | None:
    """The invitation this link belongs to, in any state (the page explains used or expired links)."""
    if not token:
        return None
    return (
        Invitation.objects.select_related("tenant")
        .for_tenant(tenant)
        .filter(token_hash=token_hash(token))
        .exclude(token_hash="")
        .first()
    )


def invitation_account(*, invitation: Invitation) -> User | None:
    """The account the invited address already has, if any. Only for whoever holds the link."""
    return User.objects.filter(email__iexact=invitation.email).first()


def invitation_usable_check(invitation: Invitation | None) -> Invitation:
    if invitation is None or invitation.revoked_at:
        raise ApplicationError("This invitation link is not valid.", code="invitation_invalid", status=404)
    if invitation.accepted_at:
        raise ApplicationError("This invitation has already been used.", code="invitation_used", status=410)
    if invitation.expires <= timezone.now():
        raise ApplicationError("This invitation has expired; ask for a new one.", code="invitation_expired", status=410)
    return invitation


@dataclass(frozen=True)
class Accepted:
    user: User
    membership: Membership
    created_account: bool


def _account_create(*, email: str, name: str, password: str) -> User:
    name = (name or "").strip()
    missing = {
        field: ["This field is required."] for field, value in (("name", name), ("password", password)) if not value
    }
    if missing:
        raise ApplicationError(
            "Enter your name and choose a password.", code="invalid", status=400, extra={"fields": missing}
        )
    user = User(email=email, full_name=name[:150])
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ApplicationError(
            " ".join(exc.messages), code="invalid", status=400, extra={"fields": {"password": exc.messages}}
        ) from exc
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:  # the same address signed up a moment ago
        raise ApplicationError(
            "An account with this e-mail was just created: log in with it to accept.",
            code="login_required",
            status=401,
        ) from exc
    return user


@transaction.atomic
def invitation_accept(
    *, tenant: Tenant, token: str, user: User | None = None, name: str = "", password: str = ""
) -> Accepted:
    """Use an invitation once.

    - ``user``: the logged-in account; it must be the invited address's.
    - no ``user``, the address has an account: ``password`` logs it in (else 401 login_required).
    - no ``user``, no account yet: ``name`` and ``password`` make it.
    """
    found = invitation_for_token(tenant=tenant, token=token)
    invitation = invitation_usable_check(
        Invitation.objects.select_for_update().filter(pk=found.pk).first() if found else None
    )
    account = invitation_account(invitation=invitation)
    created = False
    if user is not None and getattr(user, "is_authenticated", False):
        if account is None or account.pk != user.pk:
            raise ApplicationError(
                "This invitation was sent to another e-mail address; log out and open the link again.",
                code="invitation_other_account",
                status=403,
            )
    elif account is not None:
        if not password:
            raise ApplicationError(
                "You already have a Strata account: log in with its password to accept.",
                code="login_required",
                status=401,
            )
        if not account.is_active or not account.check_password(password):
            raise ApplicationError("The password is not correct.", code="invalid_credentials", status=400)
        user = account
    else:
        user = _account_create(email=invitation.email, name=name, password=password)
        created = True
    membership, _ = Membership.objects.get_or_create(user=user, tenant=tenant, defaults={"role": invitation.role})
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(
        tenant=tenant,
        action=Action.INVITATION_ACCEPTED,
        actor=user,
        target=invitation.email,
        changes={"role": membership.role, "new_account": created},
    )
    return Accepted(user=user, membership=membership, created_account=created)
