"""The database backend (``ENGINE = "core.platform.database"``).

django-tenants' backend, plus two things:

* With ``EMBEDDED_PGDATA`` in the database settings, the embedded PostgreSQL starts on the first
  connection this process makes (not when settings are imported), and HOST becomes its socket.
* Every new connection gets the session settings of DATABASE_SESSION_SETTINGS (once per
  physical connection, not per checkout); ``session_setting`` tells what it got.
* Connections come from Django's psycopg pool. A pooled connection still carries the search_path
  its previous borrower set, possibly another tenant's. Every checkout forgets which path this
  wrapper believes is set, so django-tenants sets the borrower's before the first query, and the
  pool resets the path to ``public`` when a connection is returned.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from django.conf import settings
from django_tenants.postgresql_backend.base import DatabaseWrapper as TenantDatabaseWrapper

from core.platform.database.embedded import embedded_server_socket_dir

# What each physical connection was given from DATABASE_SESSION_SETTINGS when it opened: a setting
# changed since (by a test) is told apart from the connection's.
_session_settings: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def session_setting(connection: Any, name: str) -> str | None:
    """The value DATABASE_SESSION_SETTINGS gave ``name`` on the physical connection that the
    Django ``connection`` holds now (None: not connected, or not a setting it was given)."""
    raw = connection.connection
    return _session_settings.get(raw, {}).get(name) if raw is not None else None


def reset_search_path(connection: Any) -> None:
    """psycopg_pool ``reset`` callback: a connection waits in the pool on ``public`` only."""
    connection.execute("RESET search_path")


class DatabaseWrapper(TenantDatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        pgdata = self.settings_dict.get("EMBEDDED_PGDATA")
        if pgdata and not self.settings_dict.get("HOST"):
            self.settings_dict["HOST"] = embedded_server_socket_dir(Path(pgdata), database="strata")
        return super().get_connection_params()

    @property
    def pool(self) -> Any:
        options = self.settings_dict["OPTIONS"].get("pool")
        if isinstance(options, dict) and "reset" not in options:
            options["reset"] = reset_search_path
        return super().pool

    def _configure_connection(self, connection: Any) -> bool:
        commit: bool = super()._configure_connection(connection)
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

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        connection = super().get_new_connection(conn_params)
        self.search_path_set_schemas = None  # the per-checkout reset: set ours before the first query
        return connection
