"""Provisioning a tenant: replaying every migration vs cloning the template vs a warm spare clone."""

import time

import pytest
from django.db import transaction

from tenants.services.provisioning import (
    clone_function_install,
    spares_refill,
    tenant_provision,
)
from tests.benchmarks.baselines import tenant_provision_by_migrations
from tests.benchmarks.conftest import print_table, summary

ROUNDS = 5


def timed(fn) -> float:
    started = time.perf_counter()
    with transaction.atomic():
        fn()
    return (time.perf_counter() - started) * 1000


@pytest.mark.benchmark
def test_provisioning_by_clone_and_by_spare_vs_migrating(db, settings):
    clone_function_install()  # what the first signup of a process does
    clone_times, spare_times, migrate_times = [], [], []
    for i in range(ROUNDS):
        settings.TENANT_SPARE_SCHEMAS = 0
        clone_times.append(
            timed(
                lambda i=i: tenant_provision(
                    name=f"C{i}", subdomain=f"clone{i}", schema_name=f"t_clone{i}", status="active"
                )
            )
        )
        migrate_times.append(
            timed(
                lambda i=i: tenant_provision_by_migrations(name=f"M{i}", subdomain=f"migr{i}", schema_name=f"t_migr{i}")
            )
        )
        settings.TENANT_SPARE_SCHEMAS = 1
        spares_refill()  # off the signup path: the background refill after the previous signup
        spare_times.append(
            timed(
                lambda i=i: tenant_provision(
                    name=f"S{i}", subdomain=f"spare{i}", schema_name=f"t_spare{i}", status="active"
                )
            )
        )

    migrate, clone, spare = summary(migrate_times), summary(clone_times), summary(spare_times)
    print_table(
        f"Tenant provisioning, {ROUNDS} tenants each way (ms)",
        ["method", "p50", "p95", "mean"],
        [
            ["run every migration", *migrate],
            ["clone the template at signup", *clone],
            ["rename a warm spare clone", *spare],
            ["ratio migrate / clone", *(m / c for m, c in zip(migrate, clone, strict=True))],
            ["ratio migrate / warm spare", *(m / s for m, s in zip(migrate, spare, strict=True))],
        ],
    )
    assert migrate[0] / spare[0] >= 5
    assert clone[0] < migrate[0]
