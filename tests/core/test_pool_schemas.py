"""A pooled connection and the schemas it has served: it is replaced once it has served many
(a backend keeps the catalogue entries of every schema it has read; DATABASE_CONNECTION_MAX_SCHEMAS;
the memory this bounds is measured in tests/benchmarks/bench_tenants.py), and a borrower's
schema-qualified statement sets no search_path without leaving the next query in the last borrower's."""

from __future__ import annotations

import pytest
from django.db import connection

from core.platform.database.base import DatabaseWrapper, qualified_cursor

pytestmark = pytest.mark.django_db


def pool_of_one(settings) -> DatabaseWrapper:  # noqa: ANN001
    options = {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1, "timeout": 10}}
    return DatabaseWrapper({**connection.settings_dict, "OPTIONS": options}, alias="pool_schemas")


def backend_pids(schemas: list[str], *, most: int, settings) -> list[int]:  # noqa: ANN001
    """Borrow a connection from a pool of one for each schema in turn; the backend that served each."""
    settings.DATABASE_CONNECTION_MAX_SCHEMAS = most
    wrapper = pool_of_one(settings)
    pids = []
    try:
        for schema in schemas:
            wrapper.set_schema(schema)
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), current_schema()")
                pid, current = cursor.fetchone()
            assert current == schema
            pids.append(pid)
            wrapper.close()  # back to the pool
    finally:
        wrapper.close()
        wrapper.close_pool()
    return pids


def test_a_connection_is_replaced_once_it_has_served_more_schemas_than_allowed(django_db_setup, settings):  # noqa: ANN001
    acme, globex = django_db_setup["acme"].tenant.schema_name, django_db_setup["globex"].tenant.schema_name

    pids = backend_pids(["public", acme, acme, "public", globex, acme, globex], most=2, settings=settings)

    # public and acme, over and over: the same backend. globex is its third schema: it serves that
    # borrower, then the pool replaces it; the new one starts counting afresh.
    assert pids[0] == pids[1] == pids[2] == pids[3] == pids[4]
    assert pids[5] == pids[6] != pids[4]


def test_with_no_limit_one_connection_serves_every_schema(django_db_setup, settings):  # noqa: ANN001
    schemas = ["public", django_db_setup["acme"].tenant.schema_name, django_db_setup["globex"].tenant.schema_name]

    pids = backend_pids(schemas * 2, most=0, settings=settings)

    assert len(set(pids)) == 1


def test_a_qualified_cursor_sets_no_search_path_and_the_next_query_runs_in_the_borrowers_schema(
    django_db_setup,  # noqa: ANN001
    settings,  # noqa: ANN001
):
    acme, globex = django_db_setup["acme"].tenant.schema_name, django_db_setup["globex"].tenant.schema_name
    wrapper = pool_of_one(settings)
    try:
        wrapper.set_schema(globex)
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            assert cursor.fetchone() == (globex,)
        wrapper.close()  # back to the pool, still on globex's search_path

        wrapper.set_schema(acme)  # the next borrower
        with qualified_cursor(wrapper) as cursor:
            cursor.execute("SELECT current_schema(), count(*) FROM public.tenants_tenant")
            left, tenants = cursor.fetchone()
        assert left == globex and tenants >= 2  # no SET: the path is the last borrower's, and unread
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            assert cursor.fetchone() == (acme,)
    finally:
        wrapper.close()
        wrapper.close_pool()


def test_a_vector_is_a_parameter_of_every_connection_binary_where_the_server_binds_it(settings):  # noqa: ANN001
    """pgvector's Vector goes as 1.5 KB of binary to a prepared statement (the chat's search), as
    text through Django's own cursor; both read back the same vector, in a pooled connection as in
    a fresh one, and in a connection made before the statement names the type."""
    from pgvector import Vector
    from psycopg.adapt import PyFormat
    from psycopg.pq import Format

    from core.platform.database.prepared import prepared_rows

    vector = Vector([0.5, -1.25, 3.0])
    wrapper = pool_of_one(settings)
    try:
        for _ in range(2):  # a new physical connection, then the same one lent again
            with wrapper.cursor() as cursor:
                cursor.execute("SELECT %s::vector::text", [vector])
                assert cursor.fetchone() == ("[0.5,-1.25,3]",)
            assert wrapper.connection.adapters.get_dumper(Vector, PyFormat.AUTO).format == Format.BINARY
            wrapper.close()
    finally:
        wrapper.close()
        wrapper.close_pool()
    assert prepared_rows("SELECT %s::vector::text, %s::vector <=> '[1,0,0]'", [vector, vector])[0][0] == "[0.5,-1.25,3]"
