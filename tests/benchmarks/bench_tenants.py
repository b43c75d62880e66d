"""Strata at 10, 100 and 1,000 tenants: provisioning, a deploy with nothing to migrate, a deploy with one
new migration, `migrate_platform --verify`, embed_documents with nothing to do, request latency on one
tenant, database size.

    BENCH_TENANTS=10,100,1000 (default) sets the sizes; each step adds tenants to the previous one.
    BENCH_MIGRATE_DJANGO=1 also times one more new migration through Django's migrate per schema
    (`--no-replay`, the way before replayed SQL), for the ratio in the same run.
Commands run as real processes (the release and embed commands of deploy/Procfile, the web process), so
their figures include starting Python and Django, as a deploy's do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack

import httpx
import pytest
from django.db import connection

from tenants.services.provisioning import tenant_provision
from tests import migration_modules
from tests.benchmarks.conftest import percentile, print_table, summary
from tests.benchmarks.tenants import tenant_count, tenants_fill, timed_ms
from tests.migration_modules import ai_leaf, extra_ai_migrations, probe_migration
from tests.processes import ROOT, committed, free_port, procfile_argv, running, wait_for
from tests.processes import live_database_url as database_url

SIZES = [int(size) for size in os.environ.get("BENCH_TENANTS", "10,100,1000").split(",")]
PROVISION_ROUNDS = 10
REQUESTS = 200
MIGRATE_DJANGO = os.environ.get("BENCH_MIGRATE_DJANGO") == "1"


def database_mb() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0] / 2**20


def command_seconds(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    return seconds, result.stdout


def provision_times(size: int) -> list[float]:
    """Provisioning by the product's own path (no warm spare), each in its own committed transaction."""

    def one(n: int) -> None:
        tenant_provision(name="P", subdomain=f"p{size}x{n}", schema_name=f"t_p{size}x{n}", status="active")

    return [timed_ms(lambda n=n: one(n)) for n in range(PROVISION_ROUNDS)]


def request_latencies(env: dict[str, str], world) -> list[float]:  # noqa: ANN001
    port = free_port()
    web_env = {**env, "PORT": str(port), "WEB_CONCURRENCY": "1", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    headers = {"Host": f"{world.tenant.subdomain}.localhost", "Authorization": f"Token {world.owner_token}"}
    with running(procfile_argv("web", web_env, overrides={"--host": "127.0.0.1"}), env=web_env):
        wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "127.0.0.1"}, timeout=300)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as http:
            for _ in range(20):
                http.get("/api/documents/").raise_for_status()
            latencies = []
            for _ in range(REQUESTS):
                started = time.perf_counter()
                http.get("/api/documents/").raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
    return latencies


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
@pytest.mark.django_db
def test_the_platform_at_10_100_and_1000_tenants(django_db_setup, settings, tmp_path, monkeypatch):
    # The ai migrations as they are now: one added to the working tree during the run must not
    # reach the commands (a second leaf).
    snapshot = tmp_path / "ai_migrations"
    shutil.copytree(migration_modules.AI_MIGRATIONS, snapshot, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migration_modules, "AI_MIGRATIONS", snapshot)
    settings.TENANT_SPARE_SCHEMAS = 0
    settings.TASK_MODE = "queue"
    world = django_db_setup["acme"]
    env = {
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.benchmarks.settings_extra_migrations",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "TENANT_SPARE_SCHEMAS": "0",
        "MIGRATE_PARALLEL_JOBS": "2",
        "LOG_LEVEL": "ERROR",
        "DEBUG": "false",
    }
    rows = []
    extra: dict[str, str] = {}
    start_mb, start_tenants = committed(database_mb), committed(tenant_count)
    with ExitStack() as stack:
        env["STRATA_EXTRA_AI_MIGRATIONS"] = stack.enter_context(extra_ai_migrations(tmp_path / "start", extra={}))
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "start"), str(ROOT)])
        parent = ai_leaf()
        for step, size in enumerate(SIZES, 1):
            fill = committed(lambda size=size: tenants_fill(size))
            provision = committed(lambda size=size: provision_times(size))
            tenants = committed(tenant_count)
            mb_per_tenant = (committed(database_mb) - start_mb) / (tenants - start_tenants)

            noop, out = command_seconds(procfile_argv("release", env), env)
            assert "0 migrated" in out and "0 failed" in out, out

            def new_migration(name: str, column: str) -> None:
                nonlocal parent
                extra[name] = probe_migration(parent=parent, column=column, table=f"ai_{column}")
                parent = name
                module = stack.enter_context(extra_ai_migrations(tmp_path / name, extra=dict(extra)))
                env["STRATA_EXTRA_AI_MIGRATIONS"] = module
                env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / name), str(ROOT)])

            django_migrate = float("nan")
            if MIGRATE_DJANGO:
                new_migration(f"{9100 + step}_django_{size}", f"django_flag_{size}")
                django_migrate, out = command_seconds(
                    [sys.executable, "manage.py", "migrate_platform", "--no-replay"], env
                )
                assert f"{tenants} migrated (0 by replayed SQL)" in out and "0 failed" in out, out
            new_migration(f"{9000 + step}_bench_{size}", f"bench_flag_{size}")
            one, out = command_seconds(procfile_argv("release", env), env)
            assert f"{tenants} migrated ({tenants} by replayed SQL)" in out and "0 failed" in out, out
            verify, out = command_seconds([sys.executable, "manage.py", "migrate_platform", "--verify"], env)
            assert "Every tenant schema equals the template" in out, out

            embed, out = command_seconds([sys.executable, "manage.py", "embed_documents", "-v", "0"], env)
            assert f"0 of {tenants} tenant(s) had work" in out, out

            latencies = request_latencies(env, world)
            rows.append(
                [
                    tenants,
                    summary(provision)[0],
                    percentile(provision, 95),
                    noop,
                    one,
                    django_migrate,
                    verify,
                    embed,
                    percentile(latencies, 50),
                    percentile(latencies, 95),
                    mb_per_tenant,
                ]
            )
            print(f"\n{tenants} tenants (filled in {fill:.0f} s): {rows[-1]}", flush=True)

    print_table(
        "Strata by number of tenants (commands are whole processes: Python and Django start included)",
        [
            "tenants",
            "provision p50 ms",
            "provision p95 ms",
            "no-op migrate s",
            "one-migration s",
            "same, Django's migrate s",
            "--verify s",
            "no-op embed s",
            "request p50 ms",
            "request p95 ms",
            "DB MB/tenant",
        ],
        rows,
    )
    largest = rows[-1]
    assert largest[3] < 60, "a deploy with nothing to migrate must take under a minute"
    assert largest[4] < 60, "a new SQL-only migration must reach every tenant in under a minute"
    assert largest[7] < 10, "embed_documents with nothing to do must take under 10 s"
