"""Cloning by replaying the template's DDL: an exact copy, read once, read again when the template changes."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from tenants.services.schema_migrations import tenant_migrations_state
from tenants.services.template_snapshot import (
    TemplateNotClonable,
    schema_clone,
    template_snapshot,
    template_snapshot_forget,
)


@pytest.fixture(autouse=True)
def _fresh_snapshot():
    template_snapshot_forget()
    yield
    template_snapshot_forget()  # a test may have changed the template inside its transaction


def catalogue(schema: str) -> dict[str, list[tuple]]:
    """Everything about a schema's tables a tenant depends on, with the schema's name left out."""
    queries = {
        "columns": """
            SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
                   a.attgenerated, pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE c.relnamespace = %(ns)s::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY 1, a.attnum""",
        "constraints": """
            SELECT c.relname, k.conname, k.contype, replace(pg_get_constraintdef(k.oid), %(ns)s || '.', ''),
                   k.condeferrable, k.condeferred
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
            WHERE c.relnamespace = %(ns)s::regnamespace ORDER BY 1, 2""",
        "indexes": """
            SELECT tablename, indexname, replace(indexdef, %(ns)s || '.', '') FROM pg_indexes
            WHERE schemaname = %(ns)s ORDER BY 1, 2""",
        "sequences": """
            SELECT sequencename, data_type::text, start_value, increment_by, max_value, last_value
            FROM pg_sequences WHERE schemaname = %(ns)s ORDER BY 1""",
        "foreign_key_targets": """
            SELECT k.conname, t.relnamespace::regnamespace::text = %(ns)s, t.relname
            FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class t ON t.oid = k.confrelid
            WHERE c.relnamespace = %(ns)s::regnamespace AND k.contype = 'f' ORDER BY 1""",
    }
    described = {}
    with connection.cursor() as cursor:
        for name, sql in queries.items():
            cursor.execute(sql, {"ns": schema})
            described[name] = cursor.fetchall()
        rows = []
        for (table,) in {(row[0],) for row in described["columns"]}:
            cursor.execute(
                f'SELECT count(*), md5(string_agg(t::text, \',\' ORDER BY t::text)) FROM "{schema}"."{table}" t'
            )
            rows.append((table, *cursor.fetchone()))
        described["rows"] = sorted(rows)
    return described


def clone(name: str) -> None:
    with transaction.atomic():
        schema_clone(schema_name=name)
        connection.set_schema_to_public()


def test_a_clone_is_an_exact_copy_of_the_template_catalogue_rows_and_sequences(db):
    clone("t_snapshot_copy")

    template, copy = catalogue(settings.TENANT_BASE_SCHEMA), catalogue("t_snapshot_copy")

    assert copy == template
    assert ("chunk_embedding_hnsw",) in {(row[1],) for row in copy["indexes"]}
    assert ("ai_chunk", "embedding", "vector(384)") in {row[:3] for row in copy["columns"]}
    # Foreign keys point inside the clone (or at public's users), never at the template.
    assert all(inside or target == "core_user" for _name, inside, target in copy["foreign_key_targets"])


def test_a_clone_records_the_template_migration_state_and_continues_its_sequences(db):
    clone("t_snapshot_state")

    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description('t_snapshot_state'::regnamespace, 'pg_namespace')")
        state = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO t_snapshot_state.ai_prompttemplate (name, version, system_prompt, active, created) "
            "VALUES ('extra', 1, 'x', false, now()) RETURNING id"
        )
        new_id = cursor.fetchone()[0]
        cursor.execute(f"SELECT max(id) FROM {settings.TENANT_BASE_SCHEMA}.ai_prompttemplate")
        template_max = cursor.fetchone()[0]

    assert state == tenant_migrations_state()
    assert new_id == template_max + 1


def test_the_template_catalogue_is_read_once_and_each_clone_is_one_script(db):
    clone("t_snapshot_first")

    with CaptureQueriesContext(connection) as queries:
        clone("t_snapshot_second")

    bookkeeping = ("SAVEPOINT", "RELEASE", "SET search_path")
    statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(bookkeeping)]
    assert not [sql for sql in statements if "pg_attribute" in sql or "pg_constraint" in sql]
    assert len(statements) == 3  # the template's fingerprint, CREATE SCHEMA, the script


def test_a_template_change_is_noticed_by_the_next_clone(db):
    first = template_snapshot()
    with connection.cursor() as cursor:
        # What a deploy's migration of the template does to its bookkeeping.
        cursor.execute(
            f"INSERT INTO {settings.TENANT_BASE_SCHEMA}.django_migrations (app, name, applied) "
            "VALUES ('ai', '9999_deploy', now())"
        )
        cursor.execute(f"ALTER TABLE {settings.TENANT_BASE_SCHEMA}.ai_document ADD COLUMN added_by_deploy integer")

    clone("t_snapshot_after_change")

    assert template_snapshot() is not first
    assert "added_by_deploy" in {row[1] for row in catalogue("t_snapshot_after_change")["columns"]}


def test_an_object_the_clone_cannot_copy_is_refused_by_name(db):
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE FUNCTION {settings.TENANT_BASE_SCHEMA}.tenant_helper() RETURNS int LANGUAGE sql AS 'SELECT 1'"
        )

    with pytest.raises(TemplateNotClonable, match="function tenant_helper"):
        clone("t_snapshot_refused")


def test_no_tenant_table_has_a_database_key_into_public(db):
    """A key from a tenant schema to a public table puts triggers on that table, one pair per tenant:
    at 10,000 tenants every signup, login and account deletion paid for all of them (ai 0017)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.conrelid::regclass::text, c.conname, c.confrelid::regclass::text
            FROM pg_constraint c
            WHERE c.contype = 'f' AND c.connamespace = %s::regnamespace
              AND (SELECT relnamespace FROM pg_class WHERE oid = c.confrelid) <> c.connamespace
            """,
            [settings.TENANT_BASE_SCHEMA],
        )
        assert cursor.fetchall() == []
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.core_user'::regclass")
        triggers_before = cursor.fetchone()[0]
    clone("t_keys_probe")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.core_user'::regclass")
        assert cursor.fetchone()[0] == triggers_before
