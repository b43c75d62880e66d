"""allauth's social accounts made per tenant: the only app is the one the host's tenant configured,
and the sign-in itself (who gets in, the session, where to go next) is ours.

Each tenant's app has its own ``provider_id`` (``oidc-t<tenant id>-<issuer hash>``,
``saml-t<tenant id>``), which allauth uses as the SocialAccount's provider and as the key of the
state stashed in the (tenant host's) session, so an account or a state of one tenant is never
found on another's host.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp, SocialLogin
from allauth.socialaccount.providers.base import AuthError
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from core.platform.exceptions import ApplicationError
from tenants.mfa.services import mfa_session_mark_sso
from tenants.models import Membership
from tenants.sso.models import SsoConfig
from tenants.sso.oidc import oidc_social_app
from tenants.sso.saml import saml_identity, saml_social_app
from tenants.sso.services import SsoIdentity, sso_config_get, sso_failure_record, sso_sign_in
from tenants.throttles import SsoThrottle

logger = logging.getLogger(__name__)

SESSION_BACKEND = "tenants.backends.TenantMemberBackend"  # the session our password login makes


def social_app(config: SsoConfig) -> SocialApp | None:
    """The allauth app for a tenant's configuration (SAML's comes from tenants.sso.saml)."""
    if config.protocol == SsoConfig.Protocol.OIDC:
        return oidc_social_app(
            provider_id=config.provider_id,
            name=config.tenant.name,
            issuer=config.issuer,
            client_id=config.client_id,
            secret=config.client_secret,
        )
    if config.protocol == SsoConfig.Protocol.SAML:
        return saml_social_app(config=config)
    return None


def sso_refusal(request: HttpRequest, *, code: str, message: str, status: int = 403) -> HttpResponse:
    """The page a refused sign-in ends on (never a 500)."""
    return render(request, "sso/refused.html", {"code": code, "message": message}, status=status)


def sso_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse the view's requests past SSO_THROTTLE_RATE from one address with a 429 refusal page."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttle = SsoThrottle()
        if not throttle.allow_request(request, None):  # type: ignore[arg-type] # the scope is the class
            refused = sso_refusal(
                request, code="throttled", message="Too many sign-in attempts; try again in a minute.", status=429
            )
            refused["Retry-After"] = str(int(throttle.wait() or 60))
            return refused
        return view(request, *args, **kwargs)

    return wrapped


def safe_next(request: HttpRequest, next_url: str | None) -> str:
    """``next`` if it stays on this host, else the home page (no open redirect)."""
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return "/"


class TenantSocialAccountAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    def list_apps(self, request: HttpRequest, provider: Any = None, client_id: Any = None) -> list[SocialApp]:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public:
            return []
        config = sso_config_get(tenant=tenant)
        app = social_app(config) if config is not None else None
        if app is None or (provider and provider not in (app.provider, app.provider_id)):
            return []
        if client_id and client_id != app.client_id:
            return []
        return [app]

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return False  # people join through pre_social_login's rules only

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """The end of every verified sign-in: a test run shows the claims; otherwise our rules
        decide, our session is made, and the person goes to ``next`` on this host."""
        tenant = request.tenant  # type: ignore[attr-defined]
        config = sso_config_get(tenant=tenant)
        state = sociallogin.state or {}
        claims = dict((sociallogin.account.extra_data or {}).get("id_token") or {})
        if config is None or sociallogin.account.provider != config.provider_id:
            raise ImmediateHttpResponse(
                sso_refusal(request, code="sso_not_configured", message="SSO is not set up here.")
            )
        identity = SsoIdentity(
            subject=sociallogin.account.uid,
            email=str(claims.get("email") or ""),
            email_verified=claims.get("email_verified") in (True, "true"),
            name=str(claims.get("name") or ""),
            claims=claims,
        )
        if config.protocol == SsoConfig.Protocol.SAML:
            identity = saml_identity(sociallogin)
        if (state.get("data") or {}).get("test"):
            raise ImmediateHttpResponse(self._test_result(request, identity.claims))
        try:
            signed_in = sso_sign_in(tenant=tenant, config=config, identity=identity, request=request)
        except ApplicationError as refusal:
            raise ImmediateHttpResponse(
                sso_refusal(request, code=refusal.code, message=refusal.message, status=refusal.status)
            ) from None
        request.audit_login_changes = signed_in.audit_changes(config=config, identity=identity)  # type: ignore[attr-defined]
        login(request, signed_in.user, backend=SESSION_BACKEND)
        mfa_session_mark_sso(request)  # the identity provider proved the second factor (tenants.mfa)
        raise ImmediateHttpResponse(HttpResponseRedirect(safe_next(request, state.get("next"))))

    def _test_result(self, request: HttpRequest, claims: dict[str, Any]) -> HttpResponse:
        tenant = request.tenant  # type: ignore[attr-defined]
        membership = tenant.membership_of(request.user)
        if membership is None or membership.role != Membership.Role.OWNER:
            return sso_refusal(request, code="owner_required", message="Only an owner can test sign-in.")
        return render(request, "sso/test_result.html", {"claims": sorted(claims.items())})

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: Any = None,
        extra_context: Any = None,
    ) -> None:
        logger.info("SSO sign-in failed on %s: %s %r", request.get_host(), error, exception)
        cancelled = error == AuthError.CANCELLED
        tenant = getattr(request, "tenant", None)
        if tenant is not None and not tenant.is_public:
            reason = "sso_cancelled" if cancelled else "sso_failed"
            # allauth's SAML views give python3-saml's reason in the context, not as an exception.
            saml_reason = (extra_context or {}).get("saml_last_error_reason")
            detail = str(exception or saml_reason or error or "")
            sso_failure_record(tenant=tenant, reason=reason, detail=detail, request=request)
        if cancelled:
            response = sso_refusal(request, code="sso_cancelled", message="Sign-in was cancelled.", status=400)
        else:
            response = sso_refusal(
                request,
                code="sso_failed",
                message="The identity provider's answer could not be verified, or this sign-in has expired. "
                "Start again from the login page.",
            )
        raise ImmediateHttpResponse(response)
