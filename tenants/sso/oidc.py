"""allauth's OpenID Connect provider, per tenant and with the id token checks it leaves out.

allauth 65 skips the id token's signature when the token came straight from the token endpoint
(OpenID Connect Core 3.1.3.7 allows that over TLS) and sends no ``nonce``. Here every id token is
verified against the provider's JWKS (asymmetric algorithms only), with ``iss``, ``aud``,
``exp``, ``iat`` and the ``nonce`` this session sent; claims come from the verified id token
only (no userinfo, whose ``sub`` allauth does not compare with the token's).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

import jwt
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView
from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

# Never HS* (a shared secret an attacker could guess from a public key) nor "none".
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
CLOCK_SKEW_SECONDS = 60


class TenantOIDCAdapter(OpenIDConnectOAuth2Adapter):  # type: ignore[misc]  # allauth ships no type hints
    """The token exchange and id token checks of one tenant's provider."""

    # The state this callback's session stashed at the redirect (holds the nonce).
    state: dict[str, Any] | None = None

    @property
    def openid_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().openid_config
        expected = self.get_provider().app.settings["issuer"]
        if config.get("issuer", "").rstrip("/") != expected.rstrip("/"):
            raise OAuth2Error("The provider's discovery document names another issuer.")
        return config

    def get_callback_url(self, request: HttpRequest, app: SocialApp) -> str:
        return request.build_absolute_uri(reverse("sso-callback"))

    def complete_login(self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any) -> SocialLogin:
        id_token = kwargs["response"].get("id_token")
        if not id_token:
            raise OAuth2Error("The provider sent no id token.")
        claims = self.id_token_verify(app=app, id_token=id_token)
        login: SocialLogin = self.get_provider().sociallogin_from_response(request, {"id_token": claims})
        return login

    def id_token_verify(self, *, app: SocialApp, id_token: str) -> dict[str, Any]:
        config = self.openid_config
        try:
            header = jwt.get_unverified_header(id_token)
            if header.get("alg") not in ALGORITHMS:
                raise OAuth2Error(f"id token signed with {header.get('alg')!r}, which is not accepted")
            key = self._signing_key(config["jwks_uri"], header.get("kid"))
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=[header["alg"]],
                audience=app.client_id,
                issuer=config["issuer"],
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise OAuth2Error(f"The id token is not valid: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != app.client_id:
            raise OAuth2Error("The id token was issued to another party (azp).")
        expected_nonce = (self.state or {}).get("nonce")
        if not expected_nonce or not hmac.compare_digest(str(claims.get("nonce", "")), expected_nonce):
            raise OAuth2Error("The id token's nonce is not the one this sign-in sent.")
        return claims

    def _signing_key(self, jwks_uri: str, kid: str | None) -> jwt.PyJWK:
        with get_adapter().get_requests_session() as session:
            response = session.get(jwks_uri)
            response.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(response.json()).keys
        signing = [key for key in keys if getattr(key, "public_key_use", None) in (None, "sig")]
        matching = [key for key in signing if key.key_id == kid] if kid else signing
        if len(matching) != 1:
            raise OAuth2Error(f"No single signing key {kid!r} in the provider's JWKS.")
        return matching[0]


class TenantOIDCProvider(OpenIDConnectProvider):  # type: ignore[misc]
    """Replaces allauth's ``openid_connect`` class (SOCIALACCOUNT_PROVIDERS ``provider_class``)."""

    oauth2_adapter_class = TenantOIDCAdapter

    def get_login_url(self, request: HttpRequest, **kwargs: Any) -> str:
        return reverse("sso-login")

    def get_callback_url(self) -> str:
        return reverse("sso-callback")

    def redirect(
        self, request: HttpRequest, process: str, next_url: str | None = None, data: Any = None, **kwargs: Any
    ) -> HttpResponse:
        # A fresh nonce per sign-in, kept in the stashed state beside the PKCE verifier.
        nonce = secrets.token_urlsafe(32)
        auth_params = kwargs.pop("auth_params", None) or self.get_auth_params()
        auth_params["nonce"] = nonce
        response: HttpResponse = super().redirect(
            request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs
        )
        return response


class TenantOIDCCallbackView(OAuth2CallbackView):  # type: ignore[misc]
    """allauth's callback, handing the unstashed state to the adapter for the nonce check."""

    def _get_state(self, request: HttpRequest, provider: Any) -> tuple[Any, Any]:
        state, response = super()._get_state(request, provider)
        self.adapter.state = state
        return state, response


def oidc_social_app(*, provider_id: str, name: str, issuer: str, client_id: str, secret: str) -> SocialApp:
    """An unsaved SocialApp for allauth: the tenant's configuration is the one source of truth."""
    return SocialApp(
        provider=TenantOIDCProvider.id,
        provider_id=provider_id,
        name=name,
        client_id=client_id,
        secret=secret,
        settings={
            "server_url": issuer.rstrip("/"),
            "issuer": issuer,
            "oauth_pkce_enabled": True,
            "fetch_userinfo": False,
        },
    )
