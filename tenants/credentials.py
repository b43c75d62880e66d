"""The reads every request and socket starts with: the host's tenant (with its two-factor policy)
and the person a login token stands for (with their membership of that tenant and their API key).

Each is one statement of schema-qualified SQL built once from the models' ``_meta``: the ORM took
three times as long to build these select_related queries as the database to run them, and a
qualified statement needs no search_path set first (``qualified_cursor``). The instances come back
as the ORM makes them, with the related rows cached where the ORM's select_related would cache
them, so ``mfa_required_by``, ``api_key_id_of`` and ``membership.user`` cost no query afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from rest_framework.authtoken.models import Token

from core.models import User
from core.platform.database.base import qualified_cursor
from core.platform.sql_names import Selected, column, public_table
from tenants.mfa.models import MfaPolicy
from tenants.models import ApiKey, Domain, Membership, Tenant


class TokenHolder(NamedTuple):
    """A login token, its user (active or not: the caller decides) and their membership of the
    tenant asked about (None: not a member)."""

    token: Token
    user: User
    membership: Membership | None


def tenant_by_host(hostname: str) -> Tenant | None:
    """The tenant whose domain ``hostname`` is (lower case), with its two-factor policy; None if none."""
    with qualified_cursor() as cursor:
        cursor.execute(_statements().host, {"host": hostname})
        row = cursor.fetchone()
    return _statements().tenant_from(row) if row is not None else None


def token_holder(*, key: str, tenant: Tenant) -> TokenHolder | None:
    """Whose login token ``key`` is, with their membership of ``tenant``; None for no such token."""
    with qualified_cursor() as cursor:
        cursor.execute(_statements().token, {"key": key, "tenant": tenant.pk})
        row = cursor.fetchone()
    return _statements().holder_from(row, tenant) if row is not None else None


def host_and_token(*, hostname: str, key: str) -> tuple[Tenant | None, TokenHolder | None]:
    """Both of the above in one statement (a WebSocket handshake): the host's tenant, and the
    holder of ``key`` (empty: none) with their membership of that tenant."""
    statements = _statements()
    with qualified_cursor() as cursor:
        cursor.execute(statements.host_and_token, {"host": hostname, "key": key or None})
        row = cursor.fetchone()
    if row is None:
        return None, None
    tenant = statements.tenant_from(row)
    holder = statements.holder_from(row[statements.tenant_width :], tenant)
    return tenant, holder


class _Statements:
    def __init__(self) -> None:
        self.tenant, self.policy = Selected(Tenant, "t"), Selected(MfaPolicy, "p")
        self.holder = (Selected(Token, "tok"), Selected(User, "u"), Selected(Membership, "m"), Selected(ApiKey, "k"))
        self.tenant_width = len(self.tenant) + len(self.policy)
        tenant_columns = f"{self.tenant.sql}, {self.policy.sql}"
        holder_columns = ", ".join(part.sql for part in self.holder)
        tenants = (
            f"{public_table(Domain)} d"
            f" JOIN {public_table(Tenant)} t ON t.{column(Tenant, 'id')} = d.{column(Domain, 'tenant')}"
            f" LEFT JOIN {public_table(MfaPolicy)} p ON p.{column(MfaPolicy, 'tenant')} = t.{column(Tenant, 'id')}"
        )
        by_host = f" WHERE d.{column(Domain, 'domain')} = %(host)s LIMIT 1"
        user_id = f"u.{column(User, 'id')}"

        token_user = f"{public_table(Token)} tok JOIN {public_table(User)} u ON {user_id} = tok.{column(Token, 'user')}"

        def membership_and_key(tenant_id: str) -> str:
            return (
                f" LEFT JOIN {public_table(Membership)} m ON m.{column(Membership, 'tenant')} = {tenant_id}"
                f" AND m.{column(Membership, 'user')} = {user_id}"
                f" LEFT JOIN {public_table(ApiKey)} k ON k.{column(ApiKey, 'user')} = {user_id}"
            )

        self.host = f"SELECT {tenant_columns} FROM {tenants}{by_host}"
        self.token = (
            f"SELECT {holder_columns} FROM {token_user}{membership_and_key('%(tenant)s')}"
            f" WHERE tok.{column(Token, 'key')} = %(key)s"
        )
        # The token and its user on the LEFT side of the host's rows: an unknown token still finds the tenant.
        self.host_and_token = (
            f"SELECT {tenant_columns}, {holder_columns} FROM {tenants}"
            f" LEFT JOIN ({token_user}) ON tok.{column(Token, 'key')} = %(key)s"
            f"{membership_and_key('t.' + column(Tenant, 'id'))}{by_host}"
        )

    def tenant_from(self, row: Sequence[Any]) -> Tenant:
        tenant = self.tenant.instance(row[: len(self.tenant)])
        assert tenant is not None
        policy = self.policy.instance(row[len(self.tenant) : self.tenant_width])
        Tenant._meta.get_field("mfa_policy").set_cached_value(tenant, policy)
        return tenant

    def holder_from(self, row: Sequence[Any], tenant: Tenant) -> TokenHolder | None:
        values: list[Any] = []
        start = 0
        for part in self.holder:
            values.append(part.instance(row[start : start + len(part)]))
            start += len(part)
        token, user, membership, api_key = values
        if token is None:
            return None
        Token._meta.get_field("user").set_cached_value(token, user)
        User._meta.get_field("api_key").set_cached_value(user, api_key)
        if membership is not None:
            Membership._meta.get_field("user").set_cached_value(membership, user)
            Membership._meta.get_field("tenant").set_cached_value(membership, tenant)
        return TokenHolder(token, user, membership)


@functools.cache
def _statements() -> _Statements:
    return _Statements()
