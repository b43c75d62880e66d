"""A backend keeps the catalogue entries of every schema it has read, so a pooled connection that
has served many tenants is replaced when it is returned (DATABASE_CONNECTION_MAX_SCHEMAS). The
memory this bounds is measured in tests/benchmarks/bench_tenants.py."""

from __future__ import annotations

import pytest
from django.db import connection

from core.platform.database.base import DatabaseWrapper

pytestmark = pytest.mark.django_db


def backend_pids(schemas: list[str], *, most: int, settings) -> list[int]:  # noqa: ANN001
    """Borrow a connection from a pool of one for each schema in turn; the backend that served each."""
    settings.DATABASE_CONNECTION_MAX_SCHEMAS = most
    options = {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 1, "timeout": 10}}
    wrapper = DatabaseWrapper({**connection.settings_dict, "OPTIONS": options}, alias="pool_schemas")
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
