"""One's own account: password reset and change, e-mail change, signing out everywhere, finding
one's workspaces.

Requests that name an e-mail (reset, find workspaces) only defer a job and answer the same for
every address; the job decides whether anything is sent, so neither the answer nor its timing
tells whether the address has an account. Links with a secret in them are made inside the job.

Ending sessions: sessions live in each tenant's schema and in public, so instead of hunting them
down, each stores a hash of the password and of ``User.sessions_epoch`` that Django checks on
every request (and the WebSocket middleware on every handshake): a new password or a higher
epoch makes every session stale at once. Login tokens (DRF authtoken: one per account) are
deleted, or replaced when the change is made with the token itself.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.jobs import job_defer
from core.platform.mail import mail_defer, mail_recipient_allowed, mail_send
from tenants.models import Membership, Tenant, public_url, tenant_url
from tenants.services.invitations import email_normalise
from tenants.sso.services import sso_password_check

PASSWORD_RESET_JOB = "tenants.password_reset_send"  # noqa: S105 - a job name


def password_reset_tokens(*, tenant: Tenant | None) -> PasswordResetTokenGenerator:
    """Django's reset tokens under a salt of the host's own (its workspace, or the public site):
    a link works on the host it was sent for, not on every workspace of the same person."""
    tokens = PasswordResetTokenGenerator()
    host = tenant.pk if tenant is not None and not tenant.is_public else "public"
    tokens.key_salt = f"strata.tenants.password-reset.{host}"
    return tokens


WORKSPACES_FIND_JOB = "tenants.workspaces_find_send"
EMAIL_CHANGE_JOB = "tenants.email_change_send"
_EMAIL_CHANGE_SALT = "strata.email-change"


def _site(tenant: Tenant | None) -> tuple[str, str]:
    """The base URL and display name of the host a request came to (a tenant's or the public site)."""
    if tenant is None or tenant.is_public:
        return public_url(), "Strata"
    return tenant_url(tenant.subdomain), tenant.name


# --- Password reset ---------------------------------------------------------------------------


def password_reset_request(*, email: str, tenant: Tenant | None) -> None:
    """Queue the reset e-mail; the same for every address (the job decides whether to send)."""
    tenant_id = tenant.pk if tenant is not None and not tenant.is_public else None
    job_defer(PASSWORD_RESET_JOB, email=email.strip().lower(), tenant_id=tenant_id)


def _reset_candidates(email: str, tenant: Tenant | None) -> list[User]:
    # As Django's PasswordResetForm: active accounts with a usable password (API keys have none).
    users = [u for u in User.objects.filter(email__iexact=email, is_active=True) if u.has_usable_password()]
    if tenant is not None:
        # On a tenant's host only its members: the link leads back to that host's login page.
        users = [u for u in users if Membership.objects.for_tenant(tenant).filter(user=u).exists()]
        users = [u for u in users if _password_allowed(u, tenant)]
    return users


def _password_allowed(user: User, tenant: Tenant) -> bool:
    try:
        sso_password_check(user=user, tenant=tenant)
    except ApplicationError:
        return False
    return True


def password_reset_complete(*, user: User, password: str, tenant: Tenant | None) -> None:
    """A reset link's new password, unless the host's tenant enforces SSO for this person
    (ApplicationError ``sso_required``, 403)."""
    sso_password_check(user=user, tenant=tenant)
    password_set(user=user, password=password)


def password_reset_send(*, email: str, tenant_id: int | None) -> None:
    """Job body: e-mail a reset link (``/reset/<uid>/<token>/`` on the host asked) to a matching account."""
    tenant = Tenant.objects.filter(pk=tenant_id).first() if tenant_id else None
    if tenant_id and tenant is None:
        return
    base, site_name = _site(tenant)
    for user in _reset_candidates(email, tenant):
        if not mail_recipient_allowed(to=user.email, kind="password_reset"):
            continue
        uid = urlsafe_base64_encode(force_bytes(user.pk))
        token = password_reset_tokens(tenant=tenant).make_token(user)
        mail_send(
            to=user.email,
            template="tenants/email/password_reset",
            context={
                "site_name": site_name,
                "site_url": base,
                "link": f"{base}reset/{uid}/{token}/",
                "timeout_hours": settings.PASSWORD_RESET_TIMEOUT // 3600,
            },
        )


@transaction.atomic
def password_set(*, user: User, password: str, keep_token: bool = False) -> str | None:
    """Set a new password (already validated): every session elsewhere becomes stale and the
    login token is deleted; with ``keep_token`` a new token replaces it and its key is returned.
    The caller keeps its own session alive with ``update_session_auth_hash``."""
    user.set_password(password)
    user.save(update_fields=["password"])
    Token.objects.filter(user=user).delete()
    new_key = Token.objects.create(user=user).key if keep_token else None
    mail_defer(
        to=user.email,
        template="tenants/email/password_changed",
        context={"email": user.email, "site_url": public_url()},
    )
    return new_key


@transaction.atomic
def user_sign_out_everywhere(*, user: User) -> None:
    """End every session of the account on every host, and its login token."""
    User.objects.filter(pk=user.pk).update(sessions_epoch=F("sessions_epoch") + 1)
    user.refresh_from_db(fields=["sessions_epoch"])
    Token.objects.filter(user=user).delete()


# --- Profile and e-mail change ----------------------------------------------------------------


def user_name_change(*, user: User, full_name: str) -> User:
    user.full_name = full_name.strip()[:150]
    user.save(update_fields=["full_name"])
    return user


def email_change_request(*, user: User, new_email: str, tenant: Tenant) -> str:
    """Queue a confirmation link to the new address. The answer never says whether that address
    belongs to another account (the message to that address does)."""
    new_email = email_normalise(new_email)
    if new_email == user.email.lower():
        raise ApplicationError("That is already your e-mail address.", code="invalid", status=400)
    job_defer(EMAIL_CHANGE_JOB, user_id=user.pk, new_email=new_email, tenant_id=tenant.pk)
    return new_email


def email_change_send(*, user_id: int, new_email: str, tenant_id: int) -> None:
    """Job body: the confirmation link goes to the new address, or a note if it is taken."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if user is None or tenant is None or not mail_recipient_allowed(to=new_email, kind="email_change"):
        return
    base, site_name = _site(tenant)
    context = {"site_name": site_name, "site_url": base, "new_email": new_email}
    if User.objects.filter(email__iexact=new_email).exclude(pk=user.pk).exists():
        mail_send(to=new_email, template="tenants/email/email_taken", context=context)
        return
    token = signing.dumps({"user": user.pk, "from": user.email, "to": new_email}, salt=_EMAIL_CHANGE_SALT)
    context |= {"link": f"{base}account/email/{token}/", "hours": settings.EMAIL_CHANGE_MAX_AGE // 3600}
    mail_send(to=new_email, template="tenants/email/email_change", context=context)


@transaction.atomic
def email_change_confirm(*, token: str) -> User:
    """Apply a confirmed change. A link works once: it names the address it changes from."""
    try:
        data = signing.loads(token, salt=_EMAIL_CHANGE_SALT, max_age=settings.EMAIL_CHANGE_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise ApplicationError("This link has expired.", code="link_expired", status=410) from exc
    except signing.BadSignature as exc:
        raise ApplicationError("This link is not valid.", code="link_invalid", status=404) from exc
    user = User.objects.select_for_update().filter(pk=data.get("user"), is_active=True).first()
    if user is None or user.email != data.get("from"):
        raise ApplicationError("This link has already been used.", code="link_used", status=410)
    old_email, user.email = user.email, data["to"]
    try:
        with transaction.atomic():
            user.save(update_fields=["email"])
    except IntegrityError as exc:
        raise ApplicationError("This address is already in use.", code="email_taken", status=400) from exc
    mail_defer(
        to=old_email,
        template="tenants/email/email_changed",
        context={"old_email": old_email, "new_email": user.email, "site_url": public_url()},
    )
    return user


# --- Finding one's workspaces -----------------------------------------------------------------


def workspaces_find_request(*, email: str) -> None:
    """Queue the list of workspaces for this address; the same for every address."""
    job_defer(WORKSPACES_FIND_JOB, email=email.strip().lower())


def workspaces_of(*, email: str) -> list[Tenant]:
    return list(
        Tenant.objects.filter(
            memberships__user__email__iexact=email,
            memberships__user__is_active=True,
            status__in=[Tenant.Status.ACTIVE, Tenant.Status.PENDING_PAYMENT, Tenant.Status.SUSPENDED],
        )
        .exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
        .order_by("name")
        .distinct()
    )


def workspaces_find_send(*, email: str) -> None:
    """Job body: e-mail the workspaces where this address is a member (nothing if none)."""
    workspaces = workspaces_of(email=email)
    if not workspaces or not mail_recipient_allowed(to=email, kind="workspaces"):
        return
    mail_send(
        to=email,
        template="tenants/email/workspaces",
        context={
            "workspaces": [{"name": t.name, "url": f"{tenant_url(t.subdomain)}login/"} for t in workspaces],
            "site_url": public_url(),
        },
    )
