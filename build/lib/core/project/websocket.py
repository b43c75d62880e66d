"""Tenant-aware authentication for WebSocket connections (django-tenants has no ASGI support).

The host picks the tenant exactly as for HTTP; the user comes from an ``Authorization: Token``
header or the session cookie, whose session row lives in *that tenant's* schema. Every lookup
runs inside an explicit schema context on the thread that makes it, never on whatever
search_path the shared database thread was left with.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string
from django_tenants.utils import get_public_schema_name, remove_www, schema_context, tenant_context
from rest_framework.authtoken.models import Token

from tenants.models import Domain, Membership


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return ""


def _user_from_token(authorization: str) -> Any:
    keyword, _, key = authorization.partition(" ")
    if keyword != "Token" or not key:
        return None
    token = Token.objects.select_related("user").filter(key=key.strip()).first()
    return token.user if token and token.user.is_active else None


def _user_from_session(session_key: str) -> Any:
    engine = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    user = get_user(SimpleNamespace(session=engine(session_key)))  # verifies the session hash too
    return user if user.is_authenticated else None


def _same_origin(origin: str, host: str) -> bool:
    # Browsers always send Origin on WebSocket handshakes; a cookie must not work cross-site.
    return not origin or urlparse(origin).netloc == host


def resolve_connection(scope: dict[str, Any]) -> dict[str, Any]:
    """Sync: the tenant, user and membership for a handshake (each may be None / anonymous)."""
    host = _header(scope, b"host")
    hostname = remove_www(host.split(":")[0])
    resolved: dict[str, Any] = {"tenant": None, "user": AnonymousUser(), "membership": None}
    with schema_context(get_public_schema_name()):
        domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
        if domain is None or domain.tenant.schema_name == get_public_schema_name():
            return resolved
        tenant = domain.tenant
        resolved["tenant"] = tenant
        user = _user_from_token(_header(scope, b"authorization"))
    if user is None:
        cookie = SimpleCookie(_header(scope, b"cookie")).get(settings.SESSION_COOKIE_NAME)
        if cookie and _same_origin(_header(scope, b"origin"), host):
            with tenant_context(tenant):
                user = _user_from_session(cookie.value)
    if user is not None:
        resolved["user"] = user
        with schema_context(get_public_schema_name()):
            resolved["membership"] = Membership.objects.filter(user=user, tenant=tenant).first()
    return resolved


class TenantAuthMiddleware:
    """Puts ``tenant``, ``user`` and ``membership`` into a WebSocket scope; consumers decide."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            scope = {**scope, **await database_sync_to_async(resolve_connection)(scope)}
        return await self.app(scope, receive, send)
