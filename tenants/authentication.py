"""``Authorization: Bearer <key>``: a tenant API key, on its own tenant's host only; and
``Authorization: Token <key>``: DRF's user token, read with the user's membership of the host's tenant."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.request import Request

from tenants.credentials import token_holder
from tenants.models import MEMBERSHIP_READ_WITH_USER
from tenants.services.api_keys import api_key_authenticate


class TenantTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, whose one statement (``tenants.credentials.token_holder``) also
    reads the user's membership of the tenant the host selected and their API key: the tenant API
    guard (``Tenant.membership_of``) then asks nothing more."""

    tenant: Any = None

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        self.tenant = getattr(request, "tenant", None)  # DRF makes an authenticator per request
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        tenant = self.tenant
        if tenant is None or tenant.is_public:
            return super().authenticate_credentials(key)
        holder = token_holder(key=key, tenant=tenant)
        if holder is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not holder.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        setattr(holder.user, MEMBERSHIP_READ_WITH_USER, (tenant.pk, holder.membership))
        return holder.user, holder.token


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticates a program by its tenant API key: ``request.user`` is the key's own identity
    and ``request.auth`` the key, which ``core.platform.api.IsTenantMember`` admits on its
    tenant's host within its scope. Any other Bearer value is a 401, as is a key used on another
    tenant's host or on the public host.
    """

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid API key.") from exc
        api_key = api_key_authenticate(raw=raw, tenant=getattr(request, "tenant", None))
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid API key, or not a key of this organisation.")
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the OpenAPI schema names ApiKeyAuthentication: HTTP bearer with a tenant API key."""

    target_class = "tenants.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key (`<prefix>.<secret>`), on its own tenant's host only.",
        }
