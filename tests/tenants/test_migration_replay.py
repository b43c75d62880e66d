"""A new migration reaches many tenant schemas as SQL computed once and replayed per schema (each in its own
transaction, several at once); migrations with Python code go through Django's migrate; --verify proves every
schema equals the template."""

from __future__ import annotations

import io
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, migrations, models, transaction
from django.db.migrations.migration import Migration
from django.db.migrations.operations.base import Operation
from django_tenants.utils import schema_context

from tenants.services.bootstrap import platform_migrate
from tenants.services.migration_replay import _not_replayable, schemas_replay, schemas_verify
from tenants.services.schema_migrations import platform_pending, tenant_migrations_state
from tenants.services.template_snapshot import schema_clone
from tests.migration_modules import ai_leaf, extra_ai_migrations, probe_migration
from tests.processes import committed

# Columns, a foreign key to a shared table, an index, a new table with its own keys, and raw SQL.
SQL_MIGRATION = """
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ai", "{parent}"), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]

    operations = [
        migrations.AddField("document", "probe_flag", models.BooleanField(default=False)),
        migrations.AddField(
            "document",
            "probe_reviewer",
            models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.AddIndex("document", models.Index(fields=["probe_flag", "id"], name="ai_doc_probe_idx")),
        migrations.CreateModel(
            "Probe",
            [
                ("id", models.BigAutoField(primary_key=True)),
                ("document", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="ai.document")),
                ("label", models.CharField(max_length=40, unique=True)),
            ],
        ),
        migrations.RunSQL("CREATE TABLE ai_probe_raw (id integer)", "DROP TABLE ai_probe_raw"),
    ]
"""

PYTHON_MIGRATION = """
from django.db import migrations


def fill(apps, schema_editor):
    schema_editor.execute("INSERT INTO ai_probe_py VALUES (1)")


class Migration(migrations.Migration):
    dependencies = [("ai", "{parent}")]

    operations = [
        migrations.RunSQL("CREATE TABLE ai_probe_py (id integer)", "DROP TABLE ai_probe_py"),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
"""


def applied(schema: str) -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')
        return set(cursor.fetchall())


def has_column(schema: str, table: str, column: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s AND column_name = %s",
            [schema, table, column],
        )
        return cursor.fetchone()[0] == 1


def schema_comment(schema: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(%s::regnamespace, 'pg_namespace')", [schema])
        return cursor.fetchone()[0]


def test_a_sql_only_migration_is_replayed_to_every_lagging_schema_and_recorded(acme, globex, tmp_path):
    schemas = sorted([acme.tenant.schema_name, globex.tenant.schema_name])
    migration = SQL_MIGRATION.replace("{parent}", ai_leaf())

    with extra_ai_migrations(tmp_path, extra={"9001_probe": migration}):
        report = platform_migrate(jobs=1)
        state = tenant_migrations_state()
        assert platform_pending().nothing
        # What was replayed equals what Django's migrate made of the template: columns, types,
        # constraints, indexes and the recorded migrations.
        assert schemas_verify(schema_names=schemas) == {}

    assert report.ok, report
    assert set(schemas) <= set(report.replayed)
    assert set(schemas) <= set(report.tenants.migrated)
    for schema in schemas:
        assert has_column(schema, "ai_document", "probe_flag")
        assert has_column(schema, "ai_probe", "label")
        assert has_column(schema, "ai_probe_raw", "id")  # the RunSQL, replayed as is
        assert ("ai", "9001_probe") in applied(schema)
        assert schema_comment(schema) == state


def test_a_migration_with_python_code_goes_through_djangos_migrate(acme, globex, tmp_path):
    schemas = sorted([acme.tenant.schema_name, globex.tenant.schema_name])
    migration = PYTHON_MIGRATION.replace("{parent}", ai_leaf())

    with extra_ai_migrations(tmp_path, extra={"9001_python": migration}):
        report = platform_migrate(jobs=1)
        assert platform_pending().nothing

    assert report.ok, report
    assert report.replayed == []
    assert set(schemas) <= set(report.tenants.migrated)
    for schema in schemas:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT id FROM "{schema}".ai_probe_py')
            assert cursor.fetchall() == [(1,)]  # the Python code ran in every schema
        assert ("ai", "9001_python") in applied(schema)


def test_a_schema_failing_the_replay_is_rolled_back_and_reported_while_the_others_migrate(acme, globex, tmp_path):
    with connection.cursor() as cursor:  # globex already has the table the migration creates: it will fail
        cursor.execute(f'CREATE TABLE "{globex.tenant.schema_name}".ai_probe (id integer)')
    before = schema_comment(globex.tenant.schema_name)
    migration = probe_migration(parent=ai_leaf(), column="probe_flag", table="ai_probe")

    with extra_ai_migrations(tmp_path, extra={"9001_probe": migration}):
        report = platform_migrate(jobs=1)

    assert list(report.tenants.failed) == [globex.tenant.schema_name]
    assert "ai_probe" in report.tenants.failed[globex.tenant.schema_name]
    assert acme.tenant.schema_name in report.replayed
    assert ("ai", "9001_probe") in applied(acme.tenant.schema_name)
    # globex: neither the column added by the migration's first statement nor its record nor a new state.
    assert ("ai", "9001_probe") not in applied(globex.tenant.schema_name)
    assert not has_column(globex.tenant.schema_name, "ai_document", "probe_flag")
    assert schema_comment(globex.tenant.schema_name) == before


def test_verify_reports_the_schemas_that_differ_from_the_template(acme, globex):
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{acme.tenant.schema_name}".ai_document ADD COLUMN by_hand integer')
        # A shared app's record only: the schema's tenant migrations are whole, so it is not migrated.
        cursor.execute(
            f"DELETE FROM \"{globex.tenant.schema_name}\".django_migrations WHERE app = 'billing' "
            "AND name = (SELECT min(name) FROM public.django_migrations WHERE app = 'billing')"
        )

    report = platform_migrate(jobs=1, verify=True)
    err = io.StringIO()
    with pytest.raises(CommandError, match="differ from the template"):
        call_command("migrate_platform", "--verify", "--jobs", "1", stdout=io.StringIO(), stderr=err)

    assert f"{acme.tenant.schema_name}: differs from the template in columns" in err.getvalue()
    assert "columns" in report.differs[acme.tenant.schema_name]
    assert "migrations" in report.differs[globex.tenant.schema_name]
    assert not report.ok
    assert schemas_verify(schema_names=[acme.tenant.schema_name]) == {acme.tenant.schema_name: "columns"}


def test_schemas_are_replayed_over_parallel_connections_each_in_its_own_transaction(db, tmp_path):
    """Committed throwaway clones of the template (not tenants: the deploy never sees them), replayed by
    two threads with their own connections; one of them fails and is rolled back alone."""
    names = [f"replay_{uuid.uuid4().hex[:8]}_{n}" for n in range(4)]

    def clone() -> None:
        with transaction.atomic():
            for name in names:
                schema_clone(schema_name=name)
            with schema_context(names[2]), connection.cursor() as cursor:
                cursor.execute("CREATE TABLE ai_probe (id integer)")

    def drop() -> None:
        with connection.cursor() as cursor:
            cursor.execute("; ".join(f'DROP SCHEMA IF EXISTS "{name}" CASCADE' for name in names))

    committed(clone)
    try:
        migration = probe_migration(parent=ai_leaf(), column="probe_flag", table="ai_probe")
        with extra_ai_migrations(tmp_path, extra={"9001_probe": migration}):
            seen: list[str] = []
            report = committed(
                lambda: schemas_replay(schema_names=names, jobs=2, progress=lambda name, error: seen.append(name))
            )
            state = tenant_migrations_state()

        # Read on a connection of its own: this test's transaction must hold no lock on the schemas it drops.
        found = committed(
            lambda: {
                name: (has_column(name, "ai_document", "probe_flag"), applied(name), schema_comment(name))
                for name in names
            }
        )
        assert sorted(report.migrated) == sorted(names[:2] + names[3:])
        assert list(report.failed) == [names[2]]
        assert report.remaining == []
        assert sorted(seen) == sorted(names)
        for name in report.migrated:
            column, records, comment = found[name]
            assert column and ("ai", "9001_probe") in records and comment == state
        column, records, comment = found[names[2]]
        assert not column and ("ai", "9001_probe") not in records and comment != state
    finally:
        committed(drop)


def test_only_plain_schema_operations_and_sql_are_replayed_and_a_shared_apps_python_is_only_recorded():
    def migration(app: str, *ops: Operation, atomic: bool = True) -> Migration:
        made = Migration("9001_x", app)
        made.operations = list(ops)
        made.atomic = atomic
        return made

    field = models.BooleanField(default=False)
    python = migrations.RunPython(migrations.RunPython.noop)

    assert (
        _not_replayable(migration("ai", migrations.AddField("document", "x", field)), backwards=False, tenant_app=True)
        is None
    )
    assert _not_replayable(migration("ai", migrations.RunSQL("SELECT 1")), backwards=False, tenant_app=True) is None
    assert "RunPython" in _not_replayable(migration("ai", python), backwards=False, tenant_app=True)
    hidden = migrations.SeparateDatabaseAndState(database_operations=[python])
    assert "RunPython" in _not_replayable(migration("ai", hidden), backwards=False, tenant_app=True)
    assert _not_replayable(
        migration("ai", migrations.RunSQL("SELECT 1"), atomic=False), backwards=False, tenant_app=True
    )
    assert _not_replayable(migration("billing", python), backwards=False, tenant_app=False) is None
