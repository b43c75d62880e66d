"""Statements run as prepared statements: parsed once per pooled connection, and planned once
PostgreSQL finds a kept plan as good as one made for the values (after five executions).

Django binds parameters on the client and never prepares. For a statement run before every first
token whose planning is a large part of its cost (the permission-filtered kNN search: 0.2-0.6 ms of
planning against ~2 ms in all), ``prepared_rows`` sends it through a server-binding psycopg cursor
on the same connection, in the same transaction, instead.

psycopg's preparing is on only for that call. Left on, it would also count every other statement
the connection runs, keyed by its text, which with client-side binding holds the values: the last
hundred statements, bulk inserts of chunks and documents among them, kept per pooled connection.

Safe across tenants: PostgreSQL plans again when the search_path differs from the one a kept plan
was made under, and django-tenants sets the borrower's search_path before the statement (the
Django cursor opened first). Not for statements whose plan depends on planner settings changed
with SET (``enable_indexscan``): a kept plan ignores them. ``DATABASE_PREPARED_STATEMENTS = False``
(``DB_PREPARED_STATEMENTS``) turns it off, for a proxy that cannot keep them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection

# psycopg prepares a statement when told to, or after this many executions of it: never, here.
_PREPARE_WHEN_ASKED_ONLY = 2**31 - 1


def prepared_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``%s`` placeholders) on the current connection, as a prepared statement.

    Counted in Django's query log like any other query, and failing with Django's exceptions."""
    with connection.cursor() as cursor:  # connects, and sets the borrower's search_path (django-tenants)
        if not settings.DATABASE_PREPARED_STATEMENTS:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        raw = connection.connection
        started = time.monotonic()
        raw.prepare_threshold = _PREPARE_WHEN_ASKED_ONLY
        try:
            with connection.wrap_database_errors, psycopg.Cursor(raw) as prepared:
                _execute(prepared, sql, params)
                rows = prepared.fetchall()
        finally:
            raw.prepare_threshold = None  # Django's setting: nothing else is counted or prepared
        if connection.queries_logged:
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
        return rows


def _execute(prepared: psycopg.Cursor[Any], sql: str, params: Sequence[Any]) -> None:
    try:
        prepared.execute(sql, params, prepare=True)
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.InvalidSqlStatementName) as exc:
        # A migration changed a column the statement returns since this connection prepared it
        # (PostgreSQL plans a kept statement again but cannot change the columns it promised), or
        # the statement is gone (DISCARD ALL). Unless the failure ended the caller's transaction,
        # the connection's statements are dropped, psycopg's record of them too, and this one is
        # prepared anew.
        changed = isinstance(exc, psycopg.errors.InvalidSqlStatementName) or "must not change result type" in str(exc)
        if not changed or connection.in_atomic_block:
            raise
        prepared.execute("DEALLOCATE ALL")
        prepared.execute(sql, params, prepare=True)
