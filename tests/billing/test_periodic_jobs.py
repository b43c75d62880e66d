"""Periodic jobs run against the platform's own tables: their work does not grow with the number of tenants."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.signup import tenant_signup
from core.platform.jobs import app
from tests.factories import PASSWORD


def run_sync_periodic_jobs() -> list[str]:
    """Each synchronous periodic job once (the async ones only prune and retry procrastinate's rows)."""
    ran = []
    for periodic in app.periodic_registry.periodic_tasks.values():
        task = periodic.task
        if task.pass_context or _is_async(task.func):
            continue
        task.func(timestamp=0)
        ran.append(task.name)
    return sorted(ran)


def _is_async(func) -> bool:  # noqa: ANN001
    import inspect

    return inspect.iscoroutinefunction(func)


@pytest.mark.usefixtures("stripe_fake")
def test_periodic_jobs_neither_enter_tenant_schemas_nor_grow_with_tenants(acme, globex, unique_subdomain):
    # Once first: what other tests left for the jobs (expired reservations, say) is done before counting.
    run_sync_periodic_jobs()
    with CaptureQueriesContext(connection) as two_tenants:
        ran = run_sync_periodic_jobs()
    for i in range(3):
        subdomain = f"{unique_subdomain}{i}"
        tenant_signup(
            organisation=subdomain, subdomain=subdomain, email=f"o@{subdomain}.test", password=PASSWORD, plan="free"
        )
    connection.set_schema_to_public()

    with CaptureQueriesContext(connection) as five_tenants:
        run_sync_periodic_jobs()

    assert {"billing.meter_sync", "billing.grace_enforce", "tenants.spares_check"} <= set(ran)
    entered = [q["sql"] for q in five_tenants.captured_queries if q["sql"].startswith('SET search_path = "t_')]
    assert entered == []
    assert len(five_tenants.captured_queries) == len(two_tenants.captured_queries)
