"""Two-factor sign-in: enrolling a TOTP authenticator, recovery codes, the sign-in's second step,
turning it off, and a tenant's "require two-factor" policy.

allauth's MFA does the cryptography and storage (``Authenticator`` rows, TOTP validation with its
used-code cache, recovery codes derived from an encrypted seed, each usable once); its flows are
tied to its own views, sessions and messages, so the flows are ours, here.

Between the password step and the code step nothing is signed in: the client holds a signed,
short-lived "MFA pending" token naming the person, the tenant whose login checked the password,
and a fingerprint of the password and sessions epoch (a new password or "sign out everywhere"
voids pending tokens too). The code step goes through ``django.contrib.auth.authenticate``
(tenants.mfa.backends), so django-axes counts a wrong code as a failed login of that account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.mfa.adapter import get_adapter
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret, validate_totp_code
from django.conf import settings
from django.core import signing
from django.db import transaction

from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.mail import mail_defer
from tenants.audit.services import Action, audit_record
from tenants.mfa.models import MfaPolicy
from tenants.models import Membership, Tenant, tenant_url
from tenants.sign_in_tokens import SignInTokens, TokenExpired, TokenInvalid

# The step between a correct password and the code: retried until it expires, so not one-time.
_PENDING = SignInTokens(salt="strata.mfa.pending", one_time=False)
_ENROL_SALT = "strata.mfa.totp-enrol"
_TYPES = (Authenticator.Type.TOTP, Authenticator.Type.RECOVERY_CODES)


# --- Reading ---------------------------------------------------------------------------------


def mfa_enabled(*, user: Any) -> bool:
    """Whether the person has a TOTP authenticator (recovery codes only come with one)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(Authenticator.objects.filter(user_id=user.pk, type=Authenticator.Type.TOTP).exists())


@dataclass(frozen=True)
class AuthenticatorInfo:
    id: int
    type: str
    created: Any
    last_used: Any
    unused_codes: int | None = None


def authenticators_list(*, user: User) -> list[AuthenticatorInfo]:
    """The person's authenticators; recovery codes by how many are left, never the codes."""
    found = []
    for authenticator in Authenticator.objects.filter(user_id=user.pk, type__in=_TYPES).order_by("created_at"):
        unused = None
        if authenticator.type == Authenticator.Type.RECOVERY_CODES:
            unused = len(RecoveryCodes(authenticator).get_unused_codes())
        found.append(
            AuthenticatorInfo(
                authenticator.pk, authenticator.type, authenticator.created_at, authenticator.last_used_at, unused
            )
        )
    return found


def mfa_required_by(*, tenant: Tenant) -> bool:
    """The tenant's policy, read fresh: the request's tenant comes with it (tenants.middleware
    loads ``mfa_policy`` in the same query as the domain), so a change holds at once in every process."""
    if tenant.is_public:
        return False
    if Tenant.mfa_policy.is_cached(tenant):
        policy = getattr(tenant, "mfa_policy", None)
        return bool(policy is not None and policy.required)
    return MfaPolicy.objects.for_tenant(tenant).filter(required=True).exists()


# --- Enrolling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_url: str
    enrolment_token: str

    @property
    def qr_svg(self) -> str:
        return str(get_adapter().build_totp_svg(self.otpauth_url))


def totp_enrol_start(*, user: User) -> TotpEnrolment:
    """A new secret for the person's authenticator app. Nothing is stored: the signed enrolment
    token carries the secret back to ``totp_enrol_confirm`` (within MFA_ENROL_MAX_AGE)."""
    if mfa_enabled(user=user):
        raise ApplicationError("Two-factor sign-in is already on.", code="mfa_already_enabled", status=409)
    secret = generate_totp_secret()
    token = signing.dumps({"u": user.pk, "s": secret}, salt=_ENROL_SALT, compress=True)
    return TotpEnrolment(secret, get_adapter().build_totp_url(user, secret), token)


def totp_enrol_resume(*, user: User, enrolment_token: str) -> TotpEnrolment:
    """The same set-up again after a mistyped code: the app already holds this secret."""
    secret = _enrolment_secret(user=user, enrolment_token=enrolment_token)
    return TotpEnrolment(secret, get_adapter().build_totp_url(user, secret), enrolment_token)


def _enrolment_secret(*, user: User, enrolment_token: str) -> str:
    try:
        data = signing.loads(enrolment_token, salt=_ENROL_SALT, max_age=settings.MFA_ENROL_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise ApplicationError("This set-up has expired; start again.", code="enrolment_expired", status=400) from exc
    except signing.BadSignature as exc:
        raise ApplicationError("This set-up is not valid; start again.", code="enrolment_invalid", status=400) from exc
    if data.get("u") != user.pk:
        raise ApplicationError("This set-up is not valid; start again.", code="enrolment_invalid", status=400)
    return str(data["s"])


@transaction.atomic
def totp_enrol_confirm(
    *, user: User, enrolment_token: str, code: str, tenant: Tenant, request: Any = None
) -> list[str]:
    """Turn two-factor sign-in on once the app shows a valid code; returns the new recovery codes
    (the only time they are shown)."""
    secret = _enrolment_secret(user=user, enrolment_token=enrolment_token)
    if not validate_totp_code(secret, code.strip()):
        raise ApplicationError("That code is not right. Check the time on your device.", code="mfa_code_invalid")
    User.objects.select_for_update().filter(pk=user.pk).first()  # one enrolment at a time per person
    if mfa_enabled(user=user):
        raise ApplicationError("Two-factor sign-in is already on.", code="mfa_already_enabled", status=409)
    totp = TOTP.activate(user, secret)
    # The code just typed may not sign anyone in again within its window.
    totp.validate_code(code.strip())
    codes = _recovery_codes_replace(user)
    audit_record(tenant=tenant, action=Action.MFA_ENABLED, actor=user, target=user.email, request=request)
    _tell(user, tenant, enabled=True)
    return codes


def _recovery_codes_replace(user: User) -> list[str]:
    Authenticator.objects.filter(user_id=user.pk, type=Authenticator.Type.RECOVERY_CODES).delete()
    codes: list[str] = RecoveryCodes.activate(user).generate_codes()
    return codes


# --- Proving it is you -----------------------------------------------------------------------


def mfa_code_verify(*, user: User, code: str) -> bool:
    """A current TOTP code (refused if already used in its window), or an unused recovery code
    (then used up)."""
    code = (code or "").strip()
    if not code or len(code) > 64:
        return False
    for authenticator in Authenticator.objects.filter(user_id=user.pk, type__in=_TYPES).order_by("-type"):
        if authenticator.wrap().validate_code(code):
            authenticator.record_usage()  # saves last_used_at only: the used mask saved itself
            return True
    return False


def _reauthenticate(*, user: User, password: str, code: str) -> None:
    """Changes to one's second factor take the password or a current code, not just a session."""
    if password and user.has_usable_password() and user.check_password(password):
        return
    if code and mfa_code_verify(user=user, code=code):
        return
    raise ApplicationError(
        "Give your password or a current code to change two-factor sign-in.", code="reauthentication_failed"
    )


@transaction.atomic
def mfa_disable(*, user: User, tenant: Tenant, password: str = "", code: str = "", request: Any = None) -> None:
    """Remove the person's authenticator and recovery codes. On a tenant that requires two-factor
    sign-in the person is sent straight back to set it up again."""
    if not mfa_enabled(user=user):
        raise ApplicationError("Two-factor sign-in is not on.", code="mfa_not_enabled", status=409)
    _reauthenticate(user=user, password=password, code=code)
    Authenticator.objects.filter(user_id=user.pk, type__in=_TYPES).delete()
    audit_record(tenant=tenant, action=Action.MFA_DISABLED, actor=user, target=user.email, request=request)
    _tell(user, tenant, enabled=False)


def _tell(user: User, tenant: Tenant, *, enabled: bool) -> None:
    # Whoever holds a stolen session learns nothing from this mail; its owner learns something changed.
    context = {
        "email": user.email,
        "enabled": enabled,
        "site_name": tenant.name,
        "security_url": f"{tenant_url(tenant.subdomain)}account/security/",
    }
    mail_defer(to=user.email, template="tenants/email/mfa_changed", context=context)


@transaction.atomic
def recovery_codes_regenerate(*, user: User, password: str = "", code: str = "") -> list[str]:
    """New recovery codes (shown this once); the old ones stop working."""
    if not mfa_enabled(user=user):
        raise ApplicationError("Turn on two-factor sign-in first.", code="mfa_not_enabled", status=409)
    _reauthenticate(user=user, password=password, code=code)
    User.objects.select_for_update().filter(pk=user.pk).first()
    return _recovery_codes_replace(user)


# --- The sign-in's second step ---------------------------------------------------------------


def _tenant_id(tenant: Tenant | None) -> int:
    return 0 if tenant is None or tenant.is_public else int(tenant.pk)


def mfa_pending_issue(*, user: User, tenant: Tenant | None) -> str:
    """After a correct password: the token the code step takes. Nothing is signed in yet."""
    return _PENDING.issue(user=user, tenant_id=_tenant_id(tenant))


def mfa_pending_user(*, mfa_token: str, tenant: Tenant | None) -> User:
    """The person a pending token names, if it is fresh, made on this host and still current."""
    try:
        user, _ = _PENDING.read(token=mfa_token, tenant_id=_tenant_id(tenant), max_age=settings.MFA_LOGIN_MAX_AGE)
    except TokenExpired as exc:
        raise ApplicationError("This sign-in has expired; log in again.", code="mfa_token_expired") from exc
    except TokenInvalid as exc:
        raise ApplicationError("This sign-in is not valid; log in again.", code="mfa_token_invalid") from exc
    return user


# --- The tenant's policy ---------------------------------------------------------------------


@transaction.atomic
def mfa_policy_set(*, tenant: Tenant, actor: User, required: bool, request: Any = None) -> MfaPolicy:
    """Owners only. Turning it on takes two-factor sign-in on the owner's own account first, so
    the owner is never the one locked out of the settings they just changed."""
    membership = tenant.membership_of(actor)
    if membership is None or membership.role != Membership.Role.OWNER:
        raise ApplicationError(
            "Only owners of this organisation may change this.", code="permission_denied", status=403
        )
    if required and not mfa_enabled(user=actor):
        raise ApplicationError(
            "Turn on two-factor sign-in for your own account first.", code="mfa_not_enabled", status=400
        )
    policy, _ = MfaPolicy.objects.select_for_update().get_or_create(tenant=tenant)
    before = policy.required
    policy.required = required
    policy.changed_by = actor
    policy.save(update_fields=["required", "changed_by", "changed"])
    if before != required:
        audit_record(
            tenant=tenant,
            action=Action.MFA_POLICY_CHANGED,
            actor=actor,
            target=tenant.subdomain,
            changes={"mfa_required": [before, required]},
            request=request,
        )
    return policy


def mfa_policy_get(*, tenant: Tenant) -> MfaPolicy:
    return MfaPolicy.objects.for_tenant(tenant).first() or MfaPolicy(tenant=tenant)


# --- Sign-ins through the tenant's identity provider ---------------------------------------------

# Set on a session that SSO started (tenants.sso calls ``mfa_session_mark_sso`` after login()): the
# identity provider is where such a person proves a second factor, so the tenant's "require
# two-factor" policy does not send them to enrol here. A session without it is held to the policy.
SSO_SESSION_KEY = "strata.mfa.signed_in_by_sso"


def mfa_session_mark_sso(request: Any) -> None:
    request.session[SSO_SESSION_KEY] = True


def mfa_enrolment_required(*, user: Any, tenant: Tenant, session: Any = None) -> bool:
    """Whether this signed-in person must set up two-factor sign-in before anything else here:
    the tenant requires it, they are a member, have none, and did not come in through SSO."""
    if not mfa_required_by(tenant=tenant) or not getattr(user, "is_authenticated", False):
        return False
    if session is not None and session.get(SSO_SESSION_KEY):
        return False
    return not mfa_enabled(user=user) and tenant.membership_of(user) is not None
