"""Tenant schemas kept migrated without walking them.

Every tenant schema (and the template, and each warm spare) carries in its PostgreSQL comment the
digest of the tenant-app migrations it has, written in the same transaction as the change (a
clone, or the migration of that schema). One query then compares every schema with the code, so a
deploy with nothing to apply reads the catalogue once instead of opening each schema (Django's
``migrate`` lists every table of the database four times per schema: 30 ms a schema at 1,000
tenants). A schema whose comment lags is checked against its own ``django_migrations`` (the truth)
before anything runs; the ones that really lag are migrated in parallel worker processes, each
schema in its own transaction, so one tenant's failure is reported and leaves the others whole.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, connections, transaction
from django.db.migrations.loader import MigrationLoader
from django_tenants.utils import get_public_schema_name, get_tenant_base_migrate_command_class, schema_context

logger = logging.getLogger(__name__)

STATE_PREFIX = "strata:migrations="
# Schemas read per query when checking their django_migrations (one UNION ALL each batch).
_TRUTH_BATCH = 500

Node = tuple[str, str]


@functools.cache
def _disk_nodes() -> frozenset[Node]:
    """Every migration on disk (migration files only change with a deploy, which restarts processes)."""
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).graph.nodes)


def forget_disk_migrations() -> None:
    """Read the migration files again on next use (tests and benchmarks that add one)."""
    _disk_nodes.cache_clear()
    tenant_migrations_state.cache_clear()


def tenant_app_labels() -> frozenset[str]:
    return frozenset(label.rsplit(".", 1)[-1] for label in settings.TENANT_APPS)


def tenant_migration_nodes() -> frozenset[Node]:
    """The tenant-app migrations a tenant schema must have applied."""
    labels = tenant_app_labels()
    return frozenset(node for node in _disk_nodes() if node[0] in labels)


@functools.cache
def tenant_migrations_state() -> str:
    """What a current schema's comment says: a digest of the tenant-app migrations on disk."""
    names = "\n".join(f"{app}.{name}" for app, name in sorted(tenant_migration_nodes()))
    return STATE_PREFIX + hashlib.sha256(names.encode()).hexdigest()[:32]


def schema_state_mark(*, schema_names: Iterable[str], state: str | None = None) -> None:
    """Record that these schemas have every tenant migration on disk (in the caller's transaction)."""
    state = tenant_migrations_state() if state is None else state
    statements = [f"COMMENT ON SCHEMA {_quote(name)} IS {_literal(state)}" for name in schema_names]
    if statements:
        with connection.cursor() as cursor:
            cursor.execute(";\n".join(statements))


@dataclass(frozen=True)
class PlatformPending:
    """What a deploy has to do, as read by one query."""

    public: frozenset[Node]  # migrations the public schema lacks
    template_current: bool  # the template's comment says it is current
    tenants: tuple[str, ...]  # tenant schemas whose comment lags

    @property
    def nothing(self) -> bool:
        return not self.public and self.template_current and not self.tenants


def platform_pending() -> PlatformPending:
    """Compare public, the template and every tenant schema with the migrations on disk, in one query.

    On a database that has never been migrated, everything is pending.
    """
    state = tenant_migrations_state()
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT
                  (SELECT array_agg(app || '.' || name) FROM public.django_migrations),
                  (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %(template)s),
                  (SELECT array_agg(t.schema_name ORDER BY t.schema_name) FROM public.tenants_tenant t
                     LEFT JOIN pg_namespace n ON n.nspname = t.schema_name
                     WHERE t.schema_name <> %(public)s
                     AND obj_description(n.oid, 'pg_namespace') IS DISTINCT FROM %(state)s)
                """,
                {"template": settings.TENANT_BASE_SCHEMA, "public": get_public_schema_name(), "state": state},
            )
            public_applied, template_state, lagging = cursor.fetchone()
    except DatabaseError:  # no django_migrations or tenants table yet: a new database
        return PlatformPending(public=_disk_nodes(), template_current=False, tenants=())
    applied = {tuple(name.split(".", 1)) for name in public_applied or ()}
    return PlatformPending(
        public=frozenset(_disk_nodes() - applied),
        template_current=template_state == state,
        tenants=tuple(lagging or ()),
    )


def schemas_applied(schema_names: list[str]) -> dict[str, set[Node] | None]:
    """Each schema's applied tenant-app migrations, read from its own django_migrations (None when it
    has no such table or does not exist), a few hundred schemas per query."""
    labels = sorted(tenant_app_labels())
    result: dict[str, set[Node] | None] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(schema_names), _TRUTH_BATCH):
            batch = schema_names[start : start + _TRUTH_BATCH]
            cursor.execute(
                "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
                "WHERE n.nspname = ANY(%s) AND c.relname = 'django_migrations' AND c.relkind = 'r'",
                [batch],
            )
            readable = [row[0] for row in cursor.fetchall()]
            result.update({name: None for name in batch})
            if not readable:
                continue
            union = " UNION ALL ".join(
                f"SELECT {_literal(name)}, app, name FROM {_quote(name)}.django_migrations WHERE app = ANY(%s)"
                for name in readable
            )
            cursor.execute(union, [labels] * len(readable))
            for name in readable:
                result[name] = set()
            for schema_name, app, migration in cursor.fetchall():
                result[schema_name].add((app, migration))  # type: ignore[union-attr]
    return result


# --- Migrating the schemas that lag ------------------------------------------------------------


@dataclass
class SchemaOutcomes:
    """The schemas a run migrated and those that failed (each rolled back), told to ``progress``
    as each one ends: the one account of a run, by Django's migrate or by replayed SQL."""

    migrated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def record(
        self, schema_name: str, error: str | None, *, how: str, progress: Callable[[str, str | None], None] | None
    ) -> None:
        if error is None:
            self.migrated.append(schema_name)
        else:
            self.failed[schema_name] = error
            logger.error("%s in schema %s failed: %s", how, schema_name, error)
        if progress is not None:
            progress(schema_name, error)


@dataclass
class SchemasMigrateReport(SchemaOutcomes):
    checked: int = 0  # schemas whose comment lagged and whose migrations were read
    marked: int = 0  # of those, already current: only their comment was brought up to date
    seconds: float = 0.0


def schemas_migrate(
    *, schema_names: list[str], jobs: int, progress: Callable[[str, str | None], None] | None = None
) -> SchemasMigrateReport:
    """Bring these tenant schemas up to the migrations on disk.

    Schemas that already have them only get their comment fixed. The rest are migrated by ``jobs``
    worker processes (one database connection each), each schema in one transaction: a failure
    rolls that schema back whole, is reported, and the other schemas go on.
    """
    started = time.perf_counter()
    report = SchemasMigrateReport(checked=len(schema_names))
    current: list[str] = []
    lagging: list[str] = []
    unreadable: list[str] = []
    expected = tenant_migration_nodes()
    for name, applied in schemas_applied(list(schema_names)).items():
        if applied is None:
            unreadable.append(name)
        else:
            (current if expected <= applied else lagging).append(name)
    for name in unreadable:
        report.failed[name] = "the schema does not exist or has no django_migrations table"
    with transaction.atomic():
        schema_state_mark(schema_names=current)
    report.marked = len(current)
    for schema_name, error in _run_parallel(lagging, jobs=jobs):
        report.record(schema_name, error, how="migrating", progress=progress)
    report.seconds = time.perf_counter() - started
    return report


def _run_parallel(schema_names: list[str], *, jobs: int) -> Iterable[tuple[str, str | None]]:
    if not schema_names:
        return
    if jobs <= 1 or len(schema_names) == 1:
        for name in schema_names:
            yield name, schema_migrate_one(name)
        return
    # Worker processes are forked: they share the loaded code and open their own connections. The
    # parent closes its connections and pool first, so no child inherits a live socket.
    connections.close_all()
    for alias in connections:
        close_pool = getattr(connections[alias], "close_pool", None)
        if close_pool is not None:
            close_pool()
    context = multiprocessing.get_context("fork")
    with context.Pool(processes=min(jobs, len(schema_names)), initializer=_child_start) as pool:
        yield from pool.imap_unordered(_child_migrate, schema_names)


def _child_start() -> None:  # pragma: no cover - runs in the worker processes
    # The inherited connection objects point at the parent's (closed) sockets: start afresh.
    for alias in connections:
        connections[alias].connection = None


def _child_migrate(schema_name: str) -> tuple[str, str | None]:  # pragma: no cover - worker processes
    return schema_name, schema_migrate_one(schema_name)


def schema_migrate_one(schema_name: str) -> str | None:
    """Apply every pending migration to one tenant schema in one transaction; the error, or None.

    Runs the migrate command django-tenants runs per schema (signals included, so content types
    are made as in the template), inside one transaction: a failing migration leaves nothing of
    the schema's run behind. Tenant migrations must therefore be atomic (no CONCURRENTLY).
    """
    try:
        with schema_context(schema_name), transaction.atomic():
            call_command(
                get_tenant_base_migrate_command_class()(stdout=_Discard(), stderr=_Discard()),
                verbosity=0,
                interactive=False,
                skip_checks=True,
            )
            schema_state_mark(schema_names=[schema_name])
    except Exception as exc:  # noqa: BLE001 - reported per schema; the other schemas go on
        return f"{exc.__class__.__name__}: {exc}"
    return None


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
