"""SSO pages of a tenant host: starting a sign-in, the provider's callback, and the owner's settings."""

from __future__ import annotations

from typing import Any

import requests
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from core.platform.exceptions import ApplicationError
from tenants.decorators import member_required
from tenants.models import Membership
from tenants.sso.adapter import safe_next, sso_refusal, sso_throttled
from tenants.sso.models import SsoConfig
from tenants.sso.oidc import TenantOIDCAdapter, TenantOIDCCallbackView
from tenants.sso.saml import saml_service_provider
from tenants.sso.services import SsoSettings, sso_config_delete, sso_config_get, sso_config_save


def _redirect_to_provider(request: HttpRequest, *, next_url: str, test: bool) -> HttpResponse:
    tenant = getattr(request, "tenant", None)
    config = sso_config_get(tenant=tenant) if tenant is not None and not tenant.is_public else None
    if config is None:
        return sso_refusal(request, code="sso_not_configured", message="Single sign-on is not set up here.", status=404)
    try:
        # OpenID Connect or SAML (allauth's SAML provider, SP-initiated: tenants.sso.saml).
        provider = get_adapter(request).get_provider(request, config.provider_id)
        return provider.redirect(request, "login", next_url=next_url, data={"test": test})  # type: ignore[no-any-return]
    except (requests.RequestException, OAuth2Error, KeyError, ValueError):
        return sso_refusal(
            request, code="provider_unreachable", message="The identity provider cannot be reached.", status=502
        )


@require_GET
@sso_throttled
def sso_login(request: HttpRequest) -> HttpResponse:
    """``GET /sso/login/?next=``: off to the tenant's identity provider (code flow, PKCE S256, state, nonce)."""
    return _redirect_to_provider(request, next_url=safe_next(request, request.GET.get("next")), test=False)


@require_GET
@sso_throttled
def sso_callback(request: HttpRequest) -> HttpResponse:
    """Where the provider sends the person back. The state is looked up in this host's session
    under this tenant's provider id only: a state or code from another tenant finds nothing."""
    config = sso_config_get(tenant=request.tenant)  # type: ignore[attr-defined]
    if config is None or config.protocol != SsoConfig.Protocol.OIDC:
        return sso_refusal(request, code="sso_not_configured", message="Single sign-on is not set up here.", status=404)
    view = TenantOIDCCallbackView.adapter_view(TenantOIDCAdapter(request, config.provider_id))
    return view(request)  # type: ignore[no-any-return]


# --- The owner's settings page ------------------------------------------------------------------


class SsoForm(forms.Form):
    protocol = forms.ChoiceField(choices=SsoConfig.Protocol.choices)
    issuer = forms.CharField(required=False, max_length=500)
    client_id = forms.CharField(required=False, max_length=255)
    client_secret = forms.CharField(required=False, max_length=2000, widget=forms.PasswordInput)
    metadata_url = forms.CharField(required=False, max_length=500)
    metadata_xml = forms.CharField(required=False, max_length=200_000, widget=forms.Textarea)
    allowed_domains = forms.CharField(required=False, max_length=4000)
    default_role = forms.ChoiceField(choices=[("member", "Member"), ("admin", "Admin")])
    enforced = forms.BooleanField(required=False)

    def settings(self) -> SsoSettings:
        data = self.cleaned_data
        domains = [d for d in data["allowed_domains"].replace(",", " ").split() if d]
        return SsoSettings(
            protocol=data["protocol"],
            issuer=data["issuer"],
            client_id=data["client_id"],
            client_secret=data["client_secret"] or None,
            metadata_url=data["metadata_url"],
            metadata_xml=data["metadata_xml"],
            allowed_domains=domains,
            default_role=data["default_role"],
            enforced=data["enforced"],
        )


def _owner(request: HttpRequest) -> Membership:
    membership: Membership = request.membership  # type: ignore[attr-defined]
    if membership.role != Membership.Role.OWNER:
        raise PermissionDenied
    return membership


def _initial(config: SsoConfig | None) -> dict[str, Any]:
    if config is None:
        return {"protocol": "oidc", "default_role": "member"}
    return {
        "protocol": config.protocol,
        "issuer": config.issuer,
        "client_id": config.client_id,
        "metadata_url": config.metadata_url,
        "metadata_xml": config.metadata_xml,
        "allowed_domains": ", ".join(config.allowed_domains),
        "default_role": config.default_role,
        "enforced": config.enforced,
    }


@member_required
@require_http_methods(["GET", "POST"])
def sso_settings_page(request: HttpRequest) -> HttpResponse:
    membership = _owner(request)
    tenant = request.tenant  # type: ignore[attr-defined]
    config = sso_config_get(tenant=tenant)
    form = SsoForm(initial=_initial(config))
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "delete":
            sso_config_delete(tenant=tenant, actor=request.user)  # type: ignore[arg-type]
            messages.success(request, "Single sign-on is off.")
            return redirect(request.path)
        form = SsoForm(request.POST)
        if form.is_valid():
            try:
                sso_config_save(tenant=tenant, actor=request.user, data=form.settings())  # type: ignore[arg-type]
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, "Single sign-on saved.")
                return redirect(request.path)
        status = 400
    context = {
        "page": "sso",
        "membership": membership,
        "config": config,
        "form": form,
        "callback_url": request.build_absolute_uri(reverse("sso-callback")),
        "saml_sp": saml_service_provider(request=request, tenant=tenant),
        "login_url": request.build_absolute_uri(reverse("sso-login")),
    }
    return render(request, "sso/settings.html", context, status=status)


@member_required
@require_GET
def sso_test(request: HttpRequest) -> HttpResponse:
    """The owner's "test sign-in": the whole flow, ending on the claims the provider sent. A link,
    not a form: the Content-Security-Policy's form-action would stop a form's redirect to the provider."""
    _owner(request)
    return _redirect_to_provider(request, next_url="/settings/sso/", test=True)
