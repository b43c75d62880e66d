"""The database backend (``ENGINE = "core.platform.database"``).

django-tenants' backend, plus:

* With ``EMBEDDED_PGDATA`` in the database settings, the embedded PostgreSQL starts on the first
  connection this process makes (not when settings are imported), and HOST becomes its socket.
* Every new connection gets the session settings of DATABASE_SESSION_SETTINGS (once per
  physical connection, not per checkout); ``session_setting`` tells what it got.
* Connections come from Django's psycopg pool. A pooled connection still carries the search_path
  its previous borrower set, possibly another tenant's. Every checkout forgets which path this
  wrapper believes is set, so django-tenants sets the borrower's before the first query (which is
  why a returned connection needs no ``RESET search_path``: one round trip a request less).
* A pool always lends connections to the database the settings name now: one made for another
  name (before a test database was created, say) is closed and made again.
* The health check at checkout costs a round trip only when the connection's socket has something
  to read (a server that closed it, or a notice): an idle healthy connection has nothing to say.
* pgvector's ``Vector`` is a parameter every connection takes, in binary where it can
  (``vector_parameters_binary``).
* A statement whose every name is schema-qualified needs no search_path: ``qualified_cursor``
  opens a cursor that sets none (one round trip less on a fresh checkout), and leaves the next
  ordinary cursor to set the borrower's as before.
* A backend keeps the catalogue entries (relations, indexes, plans) of every schema it has read for
  as long as it lives, so a pooled connection that has served many tenants grows without end. One
  that has set the search_path of more than DATABASE_CONNECTION_MAX_SCHEMAS schemas is closed when
  it is returned, and the pool opens a fresh one in its place.
"""

from __future__ import annotations

import contextlib
import select
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection as default_connection
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper
from pgvector import Vector
from pgvector.psycopg.vector import VectorBinaryDumper, VectorDumper

from core.platform.database.embedded import embedded_server_socket_dir

# What each physical connection was given from DATABASE_SESSION_SETTINGS when it opened: a setting
# changed since (by a test) is told apart from the connection's.
_session_settings: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()
# The schemas each physical connection has set its search_path to since it opened.
_schemas_seen: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def session_setting(connection: Any, name: str) -> str | None:
    """The value DATABASE_SESSION_SETTINGS gave ``name`` on the physical connection that the
    Django ``connection`` holds now (None: not connected, or not a setting it was given)."""
    raw = connection.connection
    return _session_settings.get(raw, {}).get(name) if raw is not None else None


def check_only_when_readable(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """A psycopg_pool ``check`` callback that makes ``check``'s round trip only when the socket is
    readable. A server that ends a connection (restart, ``pg_terminate_backend``, idle timeout)
    says so on the socket, which then reads as ready; a healthy idle connection has nothing to say."""

    def check_when_readable(connection: Any) -> None:
        if connection.closed or connection.broken:
            raise psycopg.OperationalError("the pooled connection is closed")
        # poll(), not select(): a busy web process's sockets pass select()'s limit of 1024 descriptors.
        poller = select.poll()
        poller.register(connection.fileno(), select.POLLIN)
        if poller.poll(0):  # readable, or hung up / in error (reported whatever was asked)
            check(connection)

    return check_when_readable


@contextlib.contextmanager
def qualified_cursor(connection: Any = default_connection) -> Iterator[Any]:
    """A cursor for statements that name every table with its schema: it sets no search_path, so
    whichever one the pooled connection was left with (another tenant's, maybe) is never read.
    The next ordinary cursor sets the borrower's as it would have."""
    was = connection.schema_qualified_only
    connection.schema_qualified_only = True
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.schema_qualified_only = was


def vector_parameters_binary(connection: psycopg.Connection[Any]) -> None:
    """Let ``connection`` take pgvector's ``Vector`` as a parameter: in binary (1.5 KB for 384
    dimensions, made in 2 us) where the statement is bound by the server, as text where psycopg
    binds it itself (Django's default cursor). No type is named (oid 0): PostgreSQL infers
    ``vector`` from the statement, so this needs no lookup and works before the extension exists.
    Text made by ``Vector.to_text`` cost a question's search 0.19 ms of CPU to write, and
    PostgreSQL as much again to read."""
    connection.adapters.register_dumper(Vector, VectorDumper)
    connection.adapters.register_dumper(Vector, VectorBinaryDumper)  # the last one registered is the default


class DatabaseWrapper(TenantDatabaseWrapper):
    schema_qualified_only = False  # inside qualified_cursor: no search_path to set

    def get_connection_params(self) -> dict[str, Any]:
        pgdata = self.settings_dict.get("EMBEDDED_PGDATA")
        if pgdata and not self.settings_dict.get("HOST"):
            self.settings_dict["HOST"] = embedded_server_socket_dir(Path(pgdata), database="strata")
        return super().get_connection_params()

    @property
    def pool(self) -> Any:
        pool = super().pool
        if pool is not None and pool.kwargs.get("dbname") != (self.settings_dict["NAME"] or "postgres"):
            # A pool lent connections to the database the settings named when it was made; Django's
            # create_test_db renames the database without closing it, so a pool touched before the
            # test database existed would have run the migrations and every test in the other one.
            pool.close()
            self._connection_pools.pop(self.alias, None)
            pool = super().pool
        # Django passes its own check (CONN_HEALTH_CHECKS) to the pool's constructor: swap in ours.
        if pool is not None and pool._check is type(pool).check_connection:
            pool._check = check_only_when_readable(type(pool).check_connection)
        return pool

    def _configure_connection(self, connection: Any) -> bool:
        commit: bool = super()._configure_connection(connection)
        vector_parameters_binary(connection)
        wanted = {name: str(value) for name, value in getattr(settings, "DATABASE_SESSION_SETTINGS", {}).items()}
        if wanted:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in wanted),
                    [part for pair in wanted.items() for part in pair],
                )
            _session_settings[connection] = wanted
            commit = True
        return commit

    def _handle_search_path(self, cursor: Any = None) -> None:
        if self.schema_qualified_only:
            return  # search_path_set_schemas stays as it was: the next ordinary cursor sets it if need be
        was = self.search_path_set_schemas
        super()._handle_search_path(cursor)
        if self.search_path_set_schemas and self.search_path_set_schemas is not was and self.connection is not None:
            _schemas_seen.setdefault(self.connection, set()).add(self.schema_name)

    def _close(self) -> None:
        raw, most = self.connection, getattr(settings, "DATABASE_CONNECTION_MAX_SCHEMAS", 0)
        # Only a pooled connection has an expiry; psycopg_pool closes one returned past it, quietly,
        # and opens another in its place (closing it here would log a warning as a lost connection).
        if raw is not None and most and len(_schemas_seen.get(raw, ())) > most and hasattr(raw, "_expire_at"):
            raw._expire_at = 0.0
        super()._close()

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        self.search_path_set_schemas = None  # the per-checkout reset: set ours before the first query
        return connection
