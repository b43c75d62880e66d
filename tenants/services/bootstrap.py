"""Bring every schema up to date: public, then the tenant template, then the tenant schemas that lag."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from tenants.models import Tenant
from tenants.services.migration_replay import schemas_replay, schemas_verify
from tenants.services.provisioning import spares_refill, tenant_public_ensure, tenant_template_ensure
from tenants.services.schema_migrations import (
    PlatformPending,
    SchemasMigrateReport,
    platform_pending,
    schemas_migrate,
)

logger = logging.getLogger(__name__)

_MIGRATE_LOCK = "strata.platform_migrate"


@dataclass
class PlatformMigrateReport:
    pending: PlatformPending
    public_migrated: bool
    template_migrated: bool
    tenants: SchemasMigrateReport
    replayed: list[str] = field(default_factory=list)  # of tenants.migrated, those migrated by replayed SQL
    differs: dict[str, str] = field(default_factory=dict)  # --verify: schema -> what differs from the template

    @property
    def ok(self) -> bool:
        return not self.tenants.failed and not self.differs


def platform_migrate(
    *,
    verbosity: int = 0,
    jobs: int | None = None,
    verify: bool = False,
    replay: bool = True,
    progress: Callable[[str, str | None], None] | None = None,
) -> PlatformMigrateReport:
    """Migrate public, then the template, then every tenant schema that lags (see schema_migrations).

    Tenant schemas get SQL-only migrations as the SQL computed once and replayed per schema
    (migration_replay); the rest, or all with ``replay=False``, go through Django's migrate per
    schema. One run at a time per database (a session advisory lock: two deploys that start
    together take turns, and the second finds nothing left to do). ``verify`` also checks the
    schemas whose comment says they are current against their own django_migrations, and then
    compares every tenant schema with the template (catalogue and recorded migrations).
    """
    jobs = jobs or settings.MIGRATE_PARALLEL_JOBS
    with platform_migrate_lock():
        pending = platform_pending()
        if pending.public:
            call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
        tenant_public_ensure()
        template_migrated = tenant_template_ensure(verbosity=verbosity)
        schema_names = list(pending.tenants)
        if verify:
            schema_names = list(
                Tenant.objects.exclude(schema_name=settings.PUBLIC_SCHEMA_NAME)
                .order_by("schema_name")
                .values_list("schema_name", flat=True)
            )
        started = time.perf_counter()
        replayed = schemas_replay(schema_names=schema_names, jobs=jobs, progress=progress) if replay else None
        report = schemas_migrate(
            schema_names=replayed.remaining if replayed else schema_names, jobs=jobs, progress=progress
        )
        if replayed is not None:
            report.checked += len(replayed.migrated) + len(replayed.failed)
            report.migrated = replayed.migrated + report.migrated
            report.failed.update(replayed.failed)
        report.seconds = time.perf_counter() - started
        differs = schemas_verify(schema_names=schema_names) if verify else {}
        spares_refill()
    return PlatformMigrateReport(
        pending=pending,
        public_migrated=bool(pending.public),
        template_migrated=template_migrated,
        tenants=report,
        replayed=replayed.migrated if replayed else [],
        differs=differs,
    )


@contextmanager
def platform_migrate_lock() -> Iterator[None]:
    """A session-level advisory lock on a connection of its own (Django's are returned to the pool
    between schemas), held until the run ends."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as lock_connection:
        acquired = lock_connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [_MIGRATE_LOCK]).fetchone()
        if not (acquired and acquired[0]):
            logger.warning("another migrate_platform is running on this database: waiting for it")
            lock_connection.execute("SELECT pg_advisory_lock(hashtext(%s))", [_MIGRATE_LOCK])
        yield
