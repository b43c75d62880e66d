"""Many committed tenants for the scale benchmarks, made by the product's own provisioning."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import connection, transaction

from tenants.models import Tenant
from tenants.services.provisioning import tenant_provision, tenant_template_ensure_once

T = TypeVar("T")


def committed(fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread of its own, whose connection commits: the test's own transaction can't
    hold a thousand tenants (and the benchmark's subprocesses must see them)."""
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="committed")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


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
