"""Many committed tenants for the scale benchmarks, made by the product's own provisioning."""

from __future__ import annotations

import time
from pathlib import Path

from django.db import connection, transaction

from tenants.models import Tenant
from tenants.services.provisioning import tenant_provision, tenant_template_ensure_once


def tenant_count() -> int:
    return Tenant.objects.exclude(schema_name="public").count()


def tenants_fill(target: int, *, prefix: str = "fill") -> float:
    """Provision (and commit, one transaction each) until ``target`` tenants exist; seconds taken."""
    tenant_template_ensure_once()
    started = time.perf_counter()
    count = tenant_count()
    while count < target:
        with transaction.atomic():
            tenant_provision(
                name=f"Tenant {count}", subdomain=f"{prefix}{count}", schema_name=f"t_{prefix}{count}", status="active"
            )
        count += 1
    connection.set_schema_to_public()
    return time.perf_counter() - started


def timed_ms(fn) -> float:  # noqa: ANN001
    """Run ``fn`` in its own committed transaction; milliseconds."""
    started = time.perf_counter()
    with transaction.atomic():
        fn()
    connection.set_schema_to_public()
    return (time.perf_counter() - started) * 1000


def backend_mb_after_reading(conninfo: str, schemas: list[str]) -> tuple[float, float]:
    """A fresh backend's memory (the sum of its memory contexts, MB) when new and after reading
    every table of each of ``schemas`` once: the catalogue entries a backend keeps per schema."""
    import psycopg

    memory = "SELECT sum(total_bytes) / 1048576.0 FROM pg_backend_memory_contexts"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        before = float(conn.execute(memory).fetchone()[0])
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schemas[0]])]
        for schema in schemas:
            conn.execute(f'SET search_path = "{schema}", public')
            for table in tables:
                conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1')
        return before, float(conn.execute(memory).fetchone()[0])


def backends_private_mb(application_name: str) -> list[float]:
    """The private (anonymous) memory, MB, of each backend serving ``application_name``: what the
    backend allocated itself, not the shared buffers it mapped. The server runs on this machine."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application_name])
        pids = [row[0] for row in cursor.fetchall()]
    sizes = []
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue  # ended between the two reads
        kb = next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Anonymous:"))
        sizes.append(kb / 1024)
    return sizes


def members_of(user, count: int) -> list[Tenant]:  # noqa: ANN001
    """Make ``user`` a member of ``count`` tenants (the first ones by id); those tenants."""
    from tenants.models import Membership

    tenants = list(Tenant.objects.exclude(schema_name="public").order_by("id")[:count])
    Membership.objects.bulk_create(
        [Membership(user=user, tenant=tenant, role=Membership.Role.MEMBER) for tenant in tenants],
        ignore_conflicts=True,
    )
    return tenants
