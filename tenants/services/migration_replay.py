"""New tenant migrations as SQL computed once and replayed per schema; proof that every schema equals the template.

Django's migrate costs about 0.75 s per schema whatever the migration (it loads the graph, renders
the project state and lists every table each time), so a real migration took six minutes at 1,000
tenants. Tenant schemas that lag by the same migrations are in the same state (they are clones of
the template), so the SQL those migrations make is the same for all of them: it is collected once,
the way ``sqlmigrate`` does, against the first schema of the group (its catalogue answers the
schema editor's introspection), then run in every schema of the group, each in one transaction
with its ``django_migrations`` rows, its content types and its recorded state. Names stay
unqualified (the schema is first on the search_path, public second), so the same text fits every
schema. Only migrations made of Django's own schema operations and ``RunSQL`` are replayed; any
Python code (``RunPython``, a third-party operation), a non-atomic migration or SQL that names the
schema sends the group to Django's migrate instead (``schema_migrations.schemas_migrate``).
``schemas_verify`` then compares every schema's catalogue and ``django_migrations`` with the
template's, which Django's migrate made.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.migrations import operations
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.db.migrations.operations.base import Operation
from django_tenants.utils import schema_context

from tenants.services.schema_migrations import (
    Node,
    SchemaOutcomes,
    tenant_app_labels,
    tenant_migration_nodes,
    tenant_migrations_state,
)

logger = logging.getLogger(__name__)

# Schemas read per query (one UNION ALL per batch).
_READ_BATCH = 500

# Operations whose database work is the schema editor's SQL and nothing else (exact classes: a
# subclass may override database_forwards with anything).
_SQL_OPERATIONS: frozenset[type[Operation]] = frozenset(
    {
        operations.CreateModel,
        operations.DeleteModel,
        operations.RenameModel,
        operations.AlterModelTable,
        operations.AlterModelTableComment,
        operations.AlterUniqueTogether,
        operations.AlterIndexTogether,
        operations.AlterOrderWithRespectTo,
        operations.AlterModelOptions,
        operations.AlterModelManagers,
        operations.AddIndex,
        operations.RemoveIndex,
        operations.RenameIndex,
        operations.AddField,
        operations.RemoveField,
        operations.AlterField,
        operations.RenameField,
        operations.AddConstraint,
        operations.RemoveConstraint,
        operations.AlterConstraint,
        operations.RunSQL,
    }
)


@dataclass(frozen=True)
class ReplayScript:
    """What one group of schemas (the same migrations applied) gets: the migrations' SQL and records."""

    statements: tuple[str, ...]
    records: tuple[Node, ...]  # django_migrations rows, as Django's executor records them

    def body(self, *, schema_name: str, state: str) -> str:
        """The statements for ``schema_name`` (first on the search_path), run in its transaction."""
        values = ", ".join(f"({_literal(app)}, {_literal(name)}, now())" for app, name in self.records)
        parts = [*self.statements, f"INSERT INTO django_migrations (app, name, applied) VALUES {values}"]
        if "django.contrib.contenttypes" in settings.TENANT_APPS:
            # What the post_migrate signal does in a Django-migrated schema: content types for new
            # models (the template, migrated first, has them all).
            parts.append(
                "INSERT INTO django_content_type (app_label, model) SELECT t.app_label, t.model FROM "
                f"{_quote(settings.TENANT_BASE_SCHEMA)}.django_content_type t WHERE NOT EXISTS "
                "(SELECT 1 FROM django_content_type c WHERE c.app_label = t.app_label AND c.model = t.model)"
            )
        parts.append(f"COMMENT ON SCHEMA {_quote(schema_name)} IS {_literal(state)}")
        return ";\n".join(parts)


@dataclass
class ReplayReport(SchemaOutcomes):
    remaining: list[str] = field(default_factory=list)  # left to Django's migrate (or already current)
    seconds: float = 0.0


def schemas_replay(
    *, schema_names: list[str], jobs: int, progress: Callable[[str, str | None], None] | None = None
) -> ReplayReport:
    """Bring the lagging schemas among ``schema_names`` up to date by replaying their migrations' SQL.

    Schemas are grouped by the migrations they have; a group whose pending migrations are SQL only
    is replayed over ``jobs`` connections, each schema in one transaction (a failure rolls that
    schema back, is reported, and the others go on). Everything else (current schemas, unreadable
    ones, groups with Python code) is returned in ``remaining`` for ``schemas_migrate``.
    """
    started = time.perf_counter()
    report = ReplayReport()
    expected = tenant_migration_nodes()
    labels = tenant_app_labels()
    groups: dict[frozenset[Node], list[str]] = {}
    for name, applied in schemas_applied_all(schema_names).items():
        if applied is None or expected <= {node for node in applied if node[0] in labels}:
            report.remaining.append(name)
        else:
            groups.setdefault(applied, []).append(name)
    state = tenant_migrations_state()
    for names in groups.values():
        script = replay_script(schema_name=names[0])
        if script is None:
            report.remaining.extend(names)
            continue
        for schema_name, error in _replay_parallel(script, names, jobs=jobs, state=state):
            report.record(schema_name, error, how="replaying migrations", progress=progress)
    report.seconds = time.perf_counter() - started
    return report


def replay_script(*, schema_name: str) -> ReplayScript | None:
    """The SQL of the migrations ``schema_name`` lacks, or None when they cannot be replayed as SQL.

    Collected as ``sqlmigrate`` does (a schema editor that records instead of executing), from the
    state of every applied migration, with the schema first on the search_path.
    """
    with schema_context(schema_name):
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if not plan:
            return None
        labels = tenant_app_labels()
        for migration, backwards in plan:
            reason = _not_replayable(migration, backwards=backwards, tenant_app=migration.app_label in labels)
            if reason is not None:
                logger.info("%s.%s goes through Django's migrate: %s", migration.app_label, migration.name, reason)
                return None
        # The state Django's migrate starts from (every applied migration), not only the plan's ancestors.
        state = executor._create_project_state(with_applied_migrations=True)  # type: ignore[attr-defined]
        statements: list[str] = []
        records: list[Node] = []
        with transaction.atomic():
            for migration, _backwards in plan:
                with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
                    state = migration.apply(state, editor, collect_sql=True)
                statements += [sql.strip().removesuffix(";") for sql in editor.collected_sql if not _comment(sql)]
                records += migration.replaces or [(migration.app_label, migration.name)]
    if any(_quote(schema_name) in sql or f"{schema_name}." in sql for sql in statements):
        logger.info("the migrations' SQL names schema %s: they go through Django's migrate", schema_name)
        return None
    return ReplayScript(statements=tuple(statements), records=tuple(records))


def _comment(sql: str) -> bool:
    """The lines sqlmigrate puts around each operation (a statement that starts with one is kept)."""
    return all(not line.strip() or line.lstrip().startswith("--") for line in sql.splitlines())


def _not_replayable(migration: Migration, *, backwards: bool, tenant_app: bool) -> str | None:
    if backwards:
        return "a backwards plan"
    if tenant_app and not migration.atomic:
        return "not atomic"
    for operation in _database_operations(migration.operations):
        # A shared app's Python code never runs in a tenant schema (the router says no to it there,
        # and a collecting schema editor skips it): its migration is only recorded.
        if type(operation) not in _SQL_OPERATIONS and (tenant_app or type(operation) is not operations.RunPython):
            return f"{type(operation).__name__} is not plain SQL"
    return None


def _database_operations(ops: Iterable[Operation]) -> Iterator[Operation]:
    for operation in ops:
        if type(operation) is operations.SeparateDatabaseAndState:
            yield from _database_operations(operation.database_operations)
        else:
            yield operation


def _replay_parallel(
    script: ReplayScript, schema_names: list[str], *, jobs: int, state: str
) -> Iterator[tuple[str, str | None]]:
    """Each schema's result as it comes: in this thread (and its transaction, as a savepoint) for one
    job, else ``jobs`` threads with a connection each (the work is in PostgreSQL, not in Python)."""
    if jobs <= 1 or len(schema_names) == 1:
        for name in schema_names:
            yield name, schema_replay_one(script, schema_name=name, state=state)
        return
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in schema_names:
        todo.put(name)
    done: queue.SimpleQueue[tuple[str, str | None]] = queue.SimpleQueue()

    def work() -> None:
        try:
            while True:
                try:
                    name = todo.get_nowait()
                except queue.Empty:
                    return
                done.put((name, schema_replay_one(script, schema_name=name, state=state)))
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, name=f"replay-{n}", daemon=True)
        for n in range(min(jobs, _pool_room(), len(schema_names)))
    ]
    for thread in threads:
        thread.start()
    for _ in schema_names:
        yield done.get()
    for thread in threads:
        thread.join()


def _pool_room() -> int:
    """Connections the threads may hold at once: each keeps one from this process's pool while it
    works, and this thread keeps one (a thread past the pool's size would time out waiting)."""
    pool = connection.settings_dict.get("OPTIONS", {}).get("pool")
    if not pool:
        return 1_000
    max_size = pool.get("max_size") or pool.get("min_size") if isinstance(pool, dict) else None
    return max(1, int(max_size or 4) - 1)  # psycopg's default pool holds 4


def schema_replay_one(script: ReplayScript, *, schema_name: str, state: str) -> str | None:
    """Run the script in one schema in one transaction (one round trip); the error, or None."""
    try:
        with schema_context(schema_name), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(script.body(schema_name=schema_name, state=state))
    except Exception as exc:  # noqa: BLE001 - reported per schema; the other schemas go on
        return f"{exc.__class__.__name__}: {exc}"
    return None


def schemas_applied_all(schema_names: list[str]) -> dict[str, frozenset[Node] | None]:
    """Each schema's django_migrations, every app (None when it has no such table or does not exist)."""
    result: dict[str, frozenset[Node] | None] = {name: None for name in schema_names}
    with connection.cursor() as cursor:
        for start in range(0, len(schema_names), _READ_BATCH):
            batch = schema_names[start : start + _READ_BATCH]
            readable = _with_migrations_table(cursor, batch)
            if not readable:
                continue
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT {_literal(name)}, array_agg(app || '.' || name) FROM {_quote(name)}.django_migrations"
                    for name in readable
                )
            )
            for schema_name, nodes in cursor.fetchall():
                result[schema_name] = frozenset(tuple(node.split(".", 1)) for node in nodes or ())
    return result


def _with_migrations_table(cursor: CursorWrapper, schema_names: list[str]) -> list[str]:
    cursor.execute(
        "SELECT n.nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid "
        "WHERE n.nspname = ANY(%s) AND c.relname = 'django_migrations' AND c.relkind = 'r' ORDER BY 1",
        [schema_names],
    )
    return [row[0] for row in cursor.fetchall()]


# --- Every schema equals the template ------------------------------------------------------------

# One digest per schema and kind of object, names of the schema itself stripped (constraint and
# index definitions name it when it is not on the search_path).
_CATALOGUE_DIGESTS = """
WITH ns AS (SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)),
items AS (
  SELECT ns.nspname, 'columns' AS kind,
         c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || ' ' || a.attidentity::text || ' ' || a.attgenerated::text
         || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '') AS item
  FROM ns JOIN pg_class c ON c.relnamespace = ns.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
  UNION ALL
  SELECT ns.nspname, 'constraints', r.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM ns JOIN pg_constraint k ON k.connamespace = ns.oid LEFT JOIN pg_class r ON r.oid = k.conrelid
  UNION ALL
  SELECT ns.nspname, 'indexes', i.relname || ' ' || pg_get_indexdef(i.oid)
  FROM ns JOIN pg_class i ON i.relnamespace = ns.oid AND i.relkind IN ('i', 'I')
  UNION ALL
  SELECT ns.nspname, 'tables', c.relname || ' ' || c.relkind::text
  FROM ns JOIN pg_class c ON c.relnamespace = ns.oid AND c.relkind NOT IN ('i', 'I')
)
SELECT nspname, kind, md5(string_agg(item, E'\\n' ORDER BY item)) FROM
  (SELECT nspname, kind, replace(item, quote_ident(nspname) || '.', '') AS item FROM items) unqualified
GROUP BY nspname, kind
"""

_KINDS = ("tables", "columns", "constraints", "indexes", "migrations")


def schemas_verify(*, schema_names: list[str]) -> dict[str, str]:
    """The schemas that differ from the template, each with what differs ("columns, indexes"...).

    Compared: tables, columns (types, nullability, defaults), constraints, indexes, and the set of
    recorded migrations; a few hundred schemas per query.
    """
    template = settings.TENANT_BASE_SCHEMA
    expected = _digests([template])[template]
    differs: dict[str, str] = {}
    names = [name for name in schema_names if name != template]
    for start in range(0, len(names), _READ_BATCH):
        batch = names[start : start + _READ_BATCH]
        for name, digests in _digests(batch).items():
            kinds = [kind for kind in _KINDS if digests.get(kind) != expected.get(kind)]
            if kinds:
                differs[name] = ", ".join(kinds)
    return differs


def _digests(schema_names: list[str]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = {name: {} for name in schema_names}
    with schema_context(settings.PUBLIC_SCHEMA_NAME), connection.cursor() as cursor:
        cursor.execute(_CATALOGUE_DIGESTS, {"schemas": schema_names})
        for schema_name, kind, digest in cursor.fetchall():
            result[schema_name][kind] = digest
        readable = _with_migrations_table(cursor, schema_names)
        if readable:
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT {_literal(name)}, md5(string_agg(app || '.' || name, ',' ORDER BY app, name)) "
                    f"FROM {_quote(name)}.django_migrations"
                    for name in readable
                )
            )
            for schema_name, digest in cursor.fetchall():
                result[schema_name]["migrations"] = digest
    return result


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
