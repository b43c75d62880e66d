"""Many committed tenants for the scale benchmarks, made by the product's own provisioning."""

from __future__ import annotations

import time

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
