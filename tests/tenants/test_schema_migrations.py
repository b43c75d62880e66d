"""Deploys that do not walk every schema: one query finds what lags, only that is migrated, each
schema in its own transaction, several at once, one deploy at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import schema_context, tenant_context

from ai.models import PromptTemplate
from config import bootstrap as project_bootstrap
from config.signup import tenant_signup
from tenants.services.bootstrap import platform_migrate, platform_migrate_lock
from tenants.services.schema_migrations import (
    platform_pending,
    schemas_migrate,
    tenant_migrations_state,
)
from tests.factories import PASSWORD
from tests.migration_modules import ai_leaf, extra_ai_migrations, probe_migration
from tests.processes import committed
from tests.processes import live_database_url as database_url

ROOT = Path(__file__).resolve().parents[2]


def ai_back_to_initial(schema: str) -> None:
    """As if the schema had missed every ai migration after the first (really unapplied, so they can
    run again), its default prompts included; its recorded state forgotten."""
    with schema_context(schema):
        MigrationExecutor(connection).migrate([("ai", "0001_initial")])
        PromptTemplate.objects.all().delete()
    forget_state(schema)


def schema_comment(schema: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT obj_description(%s::regnamespace, 'pg_namespace')", [schema])
        return cursor.fetchone()[0]


def forget_state(schema: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'COMMENT ON SCHEMA "{schema}" IS NULL')


def applied(schema: str) -> set[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT app, name FROM "{schema}".django_migrations')
        return set(cursor.fetchall())


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_a_migrated_platform_has_nothing_pending_and_one_query_says_so(acme, globex):
    with CaptureQueriesContext(connection) as queries:
        pending = platform_pending()

    assert pending.nothing, pending
    assert len([sql for sql in statements(queries) if not sql.startswith("SET search_path")]) == 1


def test_a_schema_whose_record_lags_but_has_every_migration_is_only_marked_current(acme, globex):
    forget_state(acme.tenant.schema_name)
    pending = platform_pending()
    assert pending.tenants == (acme.tenant.schema_name,)

    with CaptureQueriesContext(connection) as queries:
        report = schemas_migrate(schema_names=list(pending.tenants), jobs=1)

    assert (report.marked, report.migrated, report.failed) == (1, [], {})
    assert schema_comment(acme.tenant.schema_name) == tenant_migrations_state()
    # Its migrations were read by name in one query; the schema was never entered.
    assert not [sql for sql in statements(queries) if sql.startswith(f'SET search_path = "{acme.tenant.schema_name}"')]
    assert platform_pending().nothing


def test_only_the_schemas_that_lag_are_opened_and_migrated(acme, globex):
    ai_back_to_initial(acme.tenant.schema_name)

    with CaptureQueriesContext(connection) as queries:
        report = platform_migrate(jobs=1)

    assert report.tenants.migrated == [acme.tenant.schema_name]
    assert report.ok
    with tenant_context(acme.tenant):
        assert PromptTemplate.objects.filter(active=True).count() == 3  # the data migration ran again
    assert ("ai", "0002_default_prompts") in applied(acme.tenant.schema_name)
    assert ("ai", ai_leaf()) in applied(acme.tenant.schema_name)
    assert schema_comment(acme.tenant.schema_name) == tenant_migrations_state()
    assert not [sql for sql in statements(queries) if globex.tenant.schema_name in sql]
    assert platform_pending().nothing


def test_a_new_migration_reaches_every_tenant_and_a_failing_one_is_rolled_back_whole(acme, globex, tmp_path):
    with connection.cursor() as cursor:  # globex already has the table the migration creates: it will fail
        cursor.execute(f'CREATE TABLE "{globex.tenant.schema_name}".ai_probe (id integer)')
    before = schema_comment(globex.tenant.schema_name)
    migration = probe_migration(parent=ai_leaf(), column="probe_flag", table="ai_probe")

    with extra_ai_migrations(tmp_path, extra={"9001_probe": migration}):
        pending = platform_pending()
        report = schemas_migrate(schema_names=[acme.tenant.schema_name, globex.tenant.schema_name], jobs=1)
        state = tenant_migrations_state()

    assert set(pending.tenants) >= {acme.tenant.schema_name, globex.tenant.schema_name}
    assert report.migrated == [acme.tenant.schema_name]
    assert list(report.failed) == [globex.tenant.schema_name]
    assert "ai_probe" in report.failed[globex.tenant.schema_name]
    assert ("ai", "9001_probe") in applied(acme.tenant.schema_name)
    assert schema_comment(acme.tenant.schema_name) == state
    # globex: neither the column added by the migration's first step nor its record nor a new state.
    assert ("ai", "9001_probe") not in applied(globex.tenant.schema_name)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND column_name = 'probe_flag'",
            [globex.tenant.schema_name],
        )
        assert cursor.fetchone()[0] == 0
    assert schema_comment(globex.tenant.schema_name) == before


def test_up_migrates_only_when_something_is_pending(acme, tmp_path, monkeypatch):
    calls = []

    class Report:
        ok = True

    monkeypatch.setattr(project_bootstrap, "platform_migrate", lambda **kw: calls.append(kw) or Report())

    project_bootstrap.platform_bootstrap(data_dir=tmp_path)
    assert calls == []

    forget_state(acme.tenant.schema_name)
    project_bootstrap.platform_bootstrap(data_dir=tmp_path)
    assert len(calls) == 1


def test_two_deploys_migrating_at_once_take_turns(db):
    order: list[str] = []
    entered = threading.Event()

    def deploy(name: str, hold: float) -> None:
        try:
            with platform_migrate_lock():
                order.append(f"{name} in")
                entered.set()
                time.sleep(hold)
                order.append(f"{name} out")
        finally:
            connection.close()

    first = threading.Thread(target=deploy, args=("first", 0.5))
    first.start()
    entered.wait(10)
    second = threading.Thread(target=deploy, args=("second", 0))
    second.start()
    first.join(10)
    second.join(10)

    assert order == ["first in", "first out", "second in", "second out"]


@pytest.mark.slow
def test_the_command_migrates_lagging_tenants_in_parallel_worker_processes(committed_tenants, unique_subdomain):
    subdomains = [f"{unique_subdomain}a", f"{unique_subdomain}b"]
    committed_tenants.extend(subdomains)
    schemas = [f"t_{s}" for s in subdomains]

    def arrange() -> None:
        for subdomain, schema in zip(subdomains, schemas, strict=True):
            tenant_signup(
                organisation=subdomain, subdomain=subdomain, email=f"o@{subdomain}.test", password=PASSWORD, plan="free"
            )
            ai_back_to_initial(schema)

    committed(arrange)
    env = {**os.environ, "DATABASE_URL": database_url(), "TENANT_SPARE_SCHEMAS": "0", "LOG_LEVEL": "ERROR"}

    result = subprocess.run(
        [sys.executable, "manage.py", "migrate_platform", "--jobs", "2", "-v", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "tenant schemas: 2 migrated" in result.stdout
    assert {f"{schema}: migrated" for schema in schemas} <= set(result.stdout.splitlines())
    for schema in schemas:
        with schema_context(schema):
            assert PromptTemplate.objects.filter(active=True).count() == 3
        assert schema_comment(schema) == tenant_migrations_state()
    assert schema_comment(settings.TENANT_BASE_SCHEMA) == tenant_migrations_state()
