"""Single sign-on: an owner's configuration of the tenant's identity provider, and who gets in."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.db import transaction

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, audit_record
from tenants.models import Membership, Tenant
from tenants.scim.models import ScimUser
from tenants.sso.models import SsoConfig
from tenants.sso.saml import saml_metadata_fetch, saml_metadata_parse

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_REQUIRED_DISCOVERY = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
_AUDITED = ("protocol", "issuer", "client_id", "metadata_url", "allowed_domains", "default_role", "enforced")


def sso_config_get(*, tenant: Tenant) -> SsoConfig | None:
    return SsoConfig.objects.for_tenant(tenant).first()


# --- Configuration ----------------------------------------------------------------------------


def provider_url_check(url: str, *, field_name: str = "issuer") -> str:
    """An identity provider's address: https, or (outside production) http on the loopback address."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ApplicationError(f"The {field_name} must be an absolute https:// URL.", code=f"{field_name}_invalid")
    if parts.scheme == "http" and not (settings.SSO_LOCAL_PROVIDERS and _is_loopback(parts.hostname)):
        raise ApplicationError(
            f"The {field_name} must use https:// (http:// only on the loopback address outside production).",
            code=f"{field_name}_insecure",
        )
    if not settings.SSO_LOCAL_PROVIDERS and not _is_public_host(parts.hostname):
        # The server fetches this address (discovery, keys, tokens): not a door to the private network.
        raise ApplicationError(
            f"The {field_name} must be a public address, not one on a private network.", code=f"{field_name}_private"
        )
    return url


def _is_public_host(host: str) -> bool:
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        return True  # unresolvable now: the fetch that follows fails with discovery_failed
    return all(ipaddress.ip_address(address.split("%", 1)[0]).is_global for address in addresses)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def oidc_discovery_fetch(*, issuer: str) -> dict[str, Any]:
    """The provider's ``.well-known/openid-configuration``, checked: its issuer is the one given
    (OpenID Connect Discovery 4.3) and every endpoint obeys the same address rule."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.SOCIALACCOUNT_REQUESTS_TIMEOUT, allow_redirects=False)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ApplicationError(
            f"Could not read the provider's discovery document at {url}.", code="discovery_failed", status=502
        ) from exc
    if not isinstance(document, dict) or any(not isinstance(document.get(key), str) for key in _REQUIRED_DISCOVERY):
        raise ApplicationError(
            f"The discovery document at {url} lacks {', '.join(_REQUIRED_DISCOVERY)}.", code="discovery_invalid"
        )
    if document["issuer"].rstrip("/") != issuer.rstrip("/"):
        raise ApplicationError(
            f"The provider says its issuer is {document['issuer']}, not {issuer}.", code="issuer_mismatch"
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        provider_url_check(document[key].split("?", 1)[0], field_name="issuer")
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise ApplicationError("The provider does not offer PKCE with S256.", code="pkce_unsupported")
    return document


def domains_normalise(domains: list[str]) -> list[str]:
    result: list[str] = []
    for raw in domains:
        domain = raw.strip().lower().lstrip("@")
        if not _DOMAIN.match(domain):
            raise ApplicationError(f"{raw!r} is not an e-mail domain.", code="domain_invalid")
        if domain not in result:
            result.append(domain)
    return result


@dataclass
class SsoSettings:
    """What an owner sends; ``client_secret`` None keeps the stored one."""

    protocol: str
    issuer: str = ""
    client_id: str = ""
    client_secret: str | None = None
    metadata_url: str = ""
    metadata_xml: str = ""
    allowed_domains: list[str] = field(default_factory=list)
    default_role: str = Membership.Role.MEMBER
    enforced: bool = False


def sso_config_save(*, tenant: Tenant, actor: User, data: SsoSettings) -> SsoConfig:
    """Create or replace the tenant's configuration. An OpenID Connect issuer is checked by
    reading its discovery document first (outside the transaction: no lock waits on the network)."""
    current = sso_config_get(tenant=tenant)
    values: dict[str, Any] = {
        "protocol": data.protocol,
        "allowed_domains": domains_normalise(data.allowed_domains),
        "default_role": data.default_role,
        "enforced": data.enforced,
        "issuer": "",
        "client_id": "",
        "client_secret": "",
        "metadata_url": "",
        "metadata_xml": "",
    }
    if data.default_role not in (Membership.Role.MEMBER, Membership.Role.ADMIN):
        raise ApplicationError("default_role must be member or admin.", code="role_invalid")
    if data.protocol == SsoConfig.Protocol.OIDC:
        issuer = provider_url_check(data.issuer)
        if not data.client_id.strip():
            raise ApplicationError("client_id is required.", code="client_id_required")
        secret = data.client_secret
        if secret is None and current is not None and current.protocol == SsoConfig.Protocol.OIDC:
            secret = current.client_secret
        if not secret:
            raise ApplicationError("client_secret is required.", code="client_secret_required")
        discovered = oidc_discovery_fetch(issuer=issuer)
        values |= {"issuer": discovered["issuer"], "client_id": data.client_id.strip(), "client_secret": secret}
    elif data.protocol == SsoConfig.Protocol.SAML:
        if not (data.metadata_url.strip() or data.metadata_xml.strip()):
            raise ApplicationError("metadata_url or metadata_xml is required.", code="metadata_required")
        metadata_url = provider_url_check(data.metadata_url, field_name="metadata_url") if data.metadata_url else ""
        # The metadata is read (and kept) now, so sign-in never waits on it; saving again refreshes it.
        metadata_xml = saml_metadata_fetch(url=metadata_url) if metadata_url else data.metadata_xml.strip()
        saml_metadata_parse(xml=metadata_xml)  # a 400 naming what is missing
        values |= {"metadata_url": metadata_url, "metadata_xml": metadata_xml}
    else:
        raise ApplicationError("protocol must be oidc or saml.", code="protocol_invalid")
    with transaction.atomic():
        before = {name: getattr(current, name) for name in _AUDITED} if current else {}
        config, created = SsoConfig.objects.update_or_create(tenant=tenant, defaults=values)
        changes = {
            name: [before.get(name), getattr(config, name)]
            for name in _AUDITED
            if before.get(name) != getattr(config, name)
        }
        if created or (current is not None and current.client_secret != config.client_secret):
            changes["client_secret"] = ["…", "(new)"]  # never the value
        if created or changes:
            audit_record(tenant=tenant, action=Action.SSO_CHANGED, actor=actor, target="sso", changes=changes)
    return config


@transaction.atomic
def sso_config_delete(*, tenant: Tenant, actor: User) -> None:
    deleted, _ = SsoConfig.objects.for_tenant(tenant).delete()
    if deleted:
        audit_record(tenant=tenant, action=Action.SSO_CHANGED, actor=actor, target="sso", changes={"deleted": True})


# --- Password policy --------------------------------------------------------------------------


def sso_password_check(*, user: Any, tenant: Tenant | None) -> None:
    """Refuse password sign-in and reset on a tenant that enforces SSO, except for its owners
    (break-glass). Others (operators, non-members) are left to the membership rules."""
    if tenant is None or tenant.is_public:
        return
    enforced = SsoConfig.objects.for_tenant(tenant).filter(enforced=True).exists()
    if not enforced:
        return
    role = Membership.objects.for_tenant(tenant).filter(user=user).values_list("role", flat=True).first()
    if role is not None and role != Membership.Role.OWNER:
        raise ApplicationError(
            f"{tenant.name} signs in with single sign-on: use “Sign in with SSO”.", code="sso_required", status=403
        )


# --- Who gets in ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SsoIdentity:
    """What the identity provider vouched for (verified claims)."""

    subject: str
    email: str
    email_verified: bool
    name: str = ""
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]


def _refused(message: str, code: str) -> ApplicationError:
    return ApplicationError(message, code=code, status=403)


@dataclass(frozen=True)
class SsoSignIn:
    user: User
    how: str  # "returning", "linked" (a member's account) or "created"

    def audit_changes(self, *, config: SsoConfig, identity: SsoIdentity) -> dict[str, str]:
        """What the sign-in's audit entry says beside the person (tenants.audit records ``login()``)."""
        return {"method": "sso", "protocol": config.protocol, "subject": identity.subject, "how": self.how}


def sso_sign_in(*, tenant: Tenant, config: SsoConfig, identity: SsoIdentity, request: Any = None) -> SsoSignIn:
    """The person this verified identity signs in as on ``tenant``, made or linked if the rules
    allow; an ApplicationError (403) says why not, and is recorded in the audit log. The caller
    makes the session with ``login()``, which the audit log records."""
    try:
        with transaction.atomic():
            user, how = _sso_person(tenant=tenant, config=config, identity=identity)
    except ApplicationError as refusal:
        audit_record(
            tenant=tenant,
            action=Action.LOGIN_FAILED,
            actor_label=identity.email or identity.subject,
            target=identity.email,
            changes={"method": "sso", "protocol": config.protocol, "reason": refusal.code},
            request=request,
        )
        raise
    return SsoSignIn(user=user, how=how)


def sso_failure_record(*, tenant: Tenant, reason: str, detail: str, request: Any = None) -> None:
    """A sign-in that failed before anyone was known (the provider's answer did not verify, or the
    sign-in state was unknown or used): in the audit log with what went wrong."""
    audit_record(
        tenant=tenant,
        action=Action.LOGIN_FAILED,
        actor_label="single sign-on",
        changes={"method": "sso", "reason": reason, "detail": detail[:300]},
        request=request,
    )


def _deprovisioned(*, tenant: Tenant, user: User) -> bool:
    """The tenant's provider turned this person off over SCIM: only SCIM brings them back."""
    return ScimUser.objects.for_tenant(tenant).filter(user=user, active=False).exists()


def _sso_person(*, tenant: Tenant, config: SsoConfig, identity: SsoIdentity) -> tuple[User, str]:
    provider = config.provider_id
    account = SocialAccount.objects.filter(provider=provider, uid=identity.subject).select_related("user").first()
    if account is not None and _deprovisioned(tenant=tenant, user=account.user):
        raise _refused(f"Your access to {tenant.name} was turned off by its identity provider.", "deprovisioned")
    if account is not None:
        user = account.user
        if not user.is_active:
            raise _refused("This account is deactivated.", "account_inactive")
        if not Membership.objects.for_tenant(tenant).filter(user=user).exists():
            raise _refused(f"You are no longer a member of {tenant.name}.", "membership_gone")
        return user, "returning"
    email = identity.email.strip().lower()
    if not email:
        raise _refused("The identity provider sent no e-mail address.", "email_missing")
    existing = User.objects.filter(email__iexact=email).first()
    allowed = identity.domain.lower() in config.allowed_domains
    if existing is not None:
        if not identity.email_verified:
            raise _refused(
                "An account with this e-mail exists, and the identity provider has not verified the address.",
                "email_unverified",
            )
        if not existing.is_active:
            raise _refused("This account is deactivated.", "account_inactive")
        if _deprovisioned(tenant=tenant, user=existing):
            raise _refused(f"Your access to {tenant.name} was turned off by its identity provider.", "deprovisioned")
        # Accounts are global and this provider is the tenant owner's: it may vouch for its own
        # members, never pull in an account that belongs to other organisations (which would
        # hand that person's account to whoever runs the provider). An invitation brings them in.
        if not Membership.objects.for_tenant(tenant).filter(user=existing).exists():
            raise _refused(
                f"This e-mail already has a Strata account. Ask an owner of {tenant.name} to invite it; "
                "once you have joined, sign in with SSO here.",
                "account_exists",
            )
        SocialAccount.objects.create(user=existing, provider=provider, uid=identity.subject, extra_data=identity.claims)
        return existing, "linked"
    if not allowed:
        raise _refused(f"E-mail addresses at {identity.domain} may not join {tenant.name}.", "domain_not_allowed")
    user = User.objects.create_user(email=email, password=None, full_name=identity.name[:150])
    Membership.objects.create(tenant=tenant, user=user, role=config.default_role)
    SocialAccount.objects.create(user=user, provider=provider, uid=identity.subject, extra_data=identity.claims)
    return user, "created"
