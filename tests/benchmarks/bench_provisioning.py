"""Provisioning a tenant by cloning the template schema vs replaying every migration."""

import time

import pytest
from django.db import transaction

from tenants.services.provisioning import tenant_provision, tenant_provision_by_migrations
from tests.benchmarks.conftest import print_table, summary

ROUNDS = 5


@pytest.mark.benchmark
def test_clone_is_at_least_5x_faster_than_migrating(db):
    clone_times, migrate_times = [], []
    for i in range(ROUNDS):
        started = time.perf_counter()
        with transaction.atomic():
            tenant_provision(name=f"Clone {i}", subdomain=f"clone{i}", schema_name=f"t_clone{i}", status="active")
        clone_times.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        with transaction.atomic():
            tenant_provision_by_migrations(name=f"Migrate {i}", subdomain=f"migr{i}", schema_name=f"t_migr{i}")
        migrate_times.append((time.perf_counter() - started) * 1000)

    clone = summary(clone_times)
    migrate = summary(migrate_times)
    print_table(
        f"Tenant provisioning, {ROUNDS} tenants each way (ms)",
        ["method", "p50", "p95", "mean"],
        [["clone template", *clone], ["run migrations", *migrate], ["ratio (migrate/clone)", *(m / c for m, c in zip(migrate, clone, strict=True))]],
    )
    assert migrate[0] / clone[0] >= 5
