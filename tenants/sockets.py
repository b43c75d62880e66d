"""Tenant-aware authentication for WebSocket connections (django-tenants has no ASGI support).

The host picks the tenant exactly as for HTTP; the user comes from an ``Authorization: Token``
header, a tenant API key (``Authorization: Bearer``, on its own tenant's host only: any other is
refused with 401 before the consumer runs) or the session cookie, whose session row lives in
*that tenant's* schema. Every lookup runs inside an explicit schema context on the thread that
makes it (``core.platform.database_steps``), never on whatever search_path its last step left.
"""

from __future__ import annotations

import functools
import logging
from http.cookies import SimpleCookie
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.utils.module_loading import import_string
from django_tenants.utils import get_public_schema_name, remove_www, schema_context, tenant_context
from rest_framework.authtoken.models import Token

from core.models import User
from core.platform.database.base import qualified_cursor
from core.platform.database_steps import database_step
from core.platform.exceptions import ApplicationError, outage_error
from core.platform.handshake import handshake_refuse
from core.platform.sql_names import column, public_table
from tenants.credentials import host_and_token
from tenants.mfa.services import mfa_enrolment_required
from tenants.models import ApiKey, Membership, Tenant
from tenants.selectors import membership_get
from tenants.services.api_keys import api_key_authenticate
from tenants.socket_limits import SocketLimitsMiddleware

logger = logging.getLogger(__name__)


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return ""


def _token_key(authorization: str) -> str:
    keyword, _, key = authorization.partition(" ")
    return key.strip() if keyword == "Token" else ""


def _user_from_session(session_key: str) -> tuple[Any, Any]:
    engine = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    session = engine(session_key)
    user = get_user(SimpleNamespace(session=session))  # verifies the session hash too
    return (user if user.is_authenticated else None), session


def _same_origin(origin: str, host: str) -> bool:
    # Browsers always send Origin on WebSocket handshakes; a cookie must not work cross-site.
    return not origin or urlparse(origin).netloc == host


def resolve_connection(scope: dict[str, Any]) -> dict[str, Any]:
    """Sync: the tenant, user and membership for a handshake (each may be None / anonymous).

    A person with a login token, the common case, costs one statement (``host_and_token``): the
    host's domain with its tenant and two-factor policy, and the token's user with their
    membership here and API key (none: a person)."""
    host = _header(scope, b"host")
    hostname = remove_www(host.split(":")[0]).lower()  # as tenants.middleware.TenantHostMiddleware
    resolved: dict[str, Any] = {"tenant": None, "user": AnonymousUser(), "membership": None, "api_key": None}
    authorization = _header(scope, b"authorization")
    bearer = authorization[:7].lower() == "bearer "
    tenant, holder = host_and_token(hostname=hostname, key="" if bearer else _token_key(authorization))
    user, membership = (
        (holder.user, holder.membership) if holder is not None and holder.user.is_active else (None, None)
    )
    with schema_context(get_public_schema_name()):
        if bearer:
            # A program's key: valid on its own tenant's host only; anything else is a 401.
            api_key = api_key_authenticate(raw=authorization[7:], tenant=tenant)
            if api_key is None:
                return {**resolved, "unauthenticated": True}
            reauthorise = _reauthorise(tenant, api_key.user, ("api_key", str(api_key.pk)))
            return {**resolved, "tenant": tenant, "user": api_key.user, "api_key": api_key, "reauthorise": reauthorise}
        if tenant is None or tenant.schema_name == get_public_schema_name():
            return resolved
        resolved["tenant"] = tenant
        credential, session = ("token", _token_key(authorization)), None
        if user is None:
            cookie = SimpleCookie(_header(scope, b"cookie")).get(settings.SESSION_COOKIE_NAME)
            if cookie and _same_origin(_header(scope, b"origin"), host):
                with tenant_context(tenant):
                    user, session = _user_from_session(cookie.value)
                credential = ("session", cookie.value)
            if user is None:
                return resolved
            membership = membership_get(user=user, tenant=tenant)
        resolved["user"] = user
        if membership is not None and mfa_enrolment_required(user=user, tenant=tenant, session=session):
            membership = None  # two-factor sign-in first, as on every page (tenants.mfa)
        resolved["membership"] = membership
    resolved["reauthorise"] = _reauthorise(tenant, user, credential)
    return resolved


def _reauthorise(tenant: Any, user: Any, credential: tuple[str, str]) -> Any:
    return functools.partial(connection_authorised, tenant=tenant, user_id=user.pk, credential=credential)


def connection_authorised(*, tenant: Tenant, user_id: int, credential: tuple[str, str]) -> bool:
    """Sync: is an open connection still allowed? The tenant is active, and the credential the
    handshake used still stands: a login token or session that still exists and is the user's
    (who is still a member), or an API key not revoked.

    Consumers call it (through ``scope["reauthorise"]``) before acting on each client frame, so
    a logout, a removal, a revoked key or a suspension takes effect on the next frame, not at the
    next handshake. It runs before every chat turn, so the rows are read in one statement of
    schema-qualified SQL (see ``_authorised_sql``): no search_path to set, no ORM to build.
    """
    kind, secret = credential
    if kind not in ("api_key", "token", "session"):
        return False
    with qualified_cursor() as cursor:
        cursor.execute(_authorised_sql(kind), {"tenant": tenant.pk, "user": user_id, "secret": secret})
        row = cursor.fetchone()
    if not (row and row[0]):
        return False
    if kind != "session":
        return True
    with tenant_context(tenant):
        user, _ = _user_from_session(secret)  # a flushed session, or a changed password, is gone
    return user is not None and user.pk == user_id


@functools.cache
def _authorised_sql(kind: str) -> str:
    """One statement: the tenant is active and (for a key) the key is live and its user active,
    or (for a person) the user is an active member and (for a login token) the token is theirs."""
    tenant_id, status = column(Tenant, "id"), column(Tenant, "status")
    user_id, user_active = column(User, "id"), column(User, "is_active")
    tenant_table, live = public_table(Tenant), Tenant.Status.ACTIVE
    active = f"EXISTS (SELECT 1 FROM {tenant_table} WHERE {tenant_id} = %(tenant)s AND {status} = '{live}')"
    if kind == "api_key":
        return (
            f"SELECT {active} AND EXISTS (SELECT 1 FROM {public_table(ApiKey)} k"
            f" JOIN {public_table(User)} u ON u.{user_id} = k.{column(ApiKey, 'user')}"
            f" WHERE k.{column(ApiKey, 'id')} = %(secret)s::bigint AND k.{column(ApiKey, 'tenant')} = %(tenant)s"
            f" AND k.{column(ApiKey, 'revoked')} IS NULL AND u.{user_active})"
        )
    member = (
        f"EXISTS (SELECT 1 FROM {public_table(Membership)} m"
        f" JOIN {public_table(User)} u ON u.{user_id} = m.{column(Membership, 'user')}"
        f" WHERE m.{column(Membership, 'tenant')} = %(tenant)s AND m.{column(Membership, 'user')} = %(user)s"
        f" AND u.{user_active})"
    )
    if kind == "token":
        token = (
            f"EXISTS (SELECT 1 FROM {public_table(Token)} WHERE {column(Token, 'key')} = %(secret)s"
            f" AND {column(Token, 'user')} = %(user)s)"
        )
        return f"SELECT {active} AND {member} AND {token}"
    return f"SELECT {active} AND {member}"


class TenantAuthMiddleware:
    """Puts ``tenant``, ``user``, ``membership``, ``api_key`` and ``reauthorise`` (a sync check that
    the connection is still allowed, see ``connection_authorised``) into a WebSocket scope;
    consumers decide. A Bearer credential that is not a live key of the host's tenant is answered
    here with HTTP 401 (the ASGI denial response), as the REST API answers it. Every socket let
    through is held to the socket limits (tenants.socket_limits), which need to know whose it is."""

    def __init__(self, app: Any) -> None:
        self.app = SocketLimitsMiddleware(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        handshake = _Handshake(receive, send)
        try:
            scope = {**scope, **await database_step(resolve_connection)(scope)}
            if scope.get("unauthenticated"):
                error = ApplicationError(
                    "Invalid API key, or not a key of this organisation.", code="not_authenticated", status=401
                )
                bearer = [(b"www-authenticate", b'Bearer realm="api"')]
                return await handshake_refuse(scope, receive, send, error=error, close_code=4401, headers=bearer)
            return await self.app(scope, handshake.receive, handshake.send)
        except Exception as exc:
            # The database or the channel layer (Redis) unreachable before the socket was accepted:
            # a 503 with Retry-After, as HTTP answers it, not a server error. Later, the socket ends.
            outage = outage_error(exc)
            if outage is None or handshake.answered:
                raise
            logger.warning("WebSocket handshake refused with 503: %s", exc.__class__.__name__, exc_info=exc)
            await handshake_refuse(
                scope, receive, send, error=outage, close_code=CLOSE_TRY_AGAIN, connect_received=handshake.connected
            )


# RFC 6455 "Try Again Later": what a server without the denial response closes a refused socket with.
CLOSE_TRY_AGAIN = 1013


class _Handshake:
    """Watches an app's side of a handshake: whether it read ``websocket.connect`` and answered it."""

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive, self._send = receive, send
        self.connected = self.answered = False

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await self._receive()
        self.connected = self.connected or message["type"] == "websocket.connect"
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self.answered = self.answered or message["type"] in (
            "websocket.accept",
            "websocket.close",
            "websocket.http.response.start",
        )
        await self._send(message)
