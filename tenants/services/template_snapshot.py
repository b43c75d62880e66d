"""Cloning the tenant template: its catalogue is read once into DDL, which is replayed for every new schema.

Why not a catalogue-walking clone function (pg-clone-schema, bundled in django-tenants)? Its
catalogue queries scan every schema's rows, so a clone took 173 ms with a handful of tenants and
about 1 s at 1,000 tenants. Here the template is read once per process (and again only when its
applied migrations change); each clone is then one round trip of plain DDL whose cost does not
depend on how many schemas the database holds. The DDL comes from PostgreSQL's own catalogue
functions (what pg_dump reads), so ``vector(384)`` columns and the HNSW index come through exactly
as the migrations made them.

Tables are created with ``LIKE`` the template's (so columns, defaults, identity, NOT NULL and CHECK
constraints are copied as PostgreSQL stores them), then the keys, indexes and foreign keys from
their definitions, the template's rows, and the sequence positions.

Names are left unqualified (read with the template first on the search_path, replayed with the
new schema first): a table resolves to the new schema's copy, a type or a shared table (core_user)
to ``public``. Every table is created before any constraint or index refers to one.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django_tenants.utils import schema_context

from tenants.services.schema_migrations import schemas_applied, tenant_migration_nodes, tenant_migrations_state


class TemplateNotClonable(RuntimeError):
    """The template holds an object the snapshot does not know how to copy (say so, never skip it)."""


@dataclass(frozen=True)
class TemplateSnapshot:
    """The template's DDL, in replay order, and what to copy from it into each clone."""

    fingerprint: str
    # The comment a clone gets: the template's migration state when it was read.
    migrations_state: str
    tables: tuple[str, ...]
    constraints: tuple[str, ...]
    indexes: tuple[str, ...]
    foreign_keys: tuple[str, ...]
    comments: tuple[str, ...]
    # (table, quoted column list) for every table that holds rows in the template.
    data: tuple[tuple[str, str], ...]
    # Every identity column's sequence: its type and how far the template's rows have used it.
    sequences: tuple[_Sequence, ...]

    def script(self, *, template: str, schema_name: str) -> str:
        """The statements that fill ``schema_name`` (already created, first on the search_path)."""
        source = _quote(template)
        statements = [*self.tables]
        for table, columns in self.data:
            statements.append(
                f"INSERT INTO {_quote(table)} ({columns}) OVERRIDING SYSTEM VALUE "
                f"SELECT {columns} FROM {source}.{_quote(table)}"
            )
        statements += [*self.constraints, *self.indexes, *self.foreign_keys, *self.comments]
        for sequence in self.sequences:
            statements += sequence.statements(schema_name=schema_name)
        statements.append(f"COMMENT ON SCHEMA {_quote(schema_name)} IS {_literal(self.migrations_state)}")
        return ";\n".join(statements)


_lock = threading.Lock()
_cached: TemplateSnapshot | None = None


def template_fingerprint() -> str:
    """What changes whenever the template does: its schema's identity and its applied migrations.

    One indexed query on the template's own small ``django_migrations``, whatever the number of
    tenants. (The template changes only by migrations: ``tenant_template_ensure``.)
    """
    template = settings.TENANT_BASE_SCHEMA
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT n.oid, count(m.id), max(m.id) FROM pg_namespace n, {_quote(template)}.django_migrations m "
            "WHERE n.nspname = %s GROUP BY n.oid",
            [template],
        )
        row = cursor.fetchone()
    return hashlib.sha256(repr(row).encode()).hexdigest()[:16]


def template_snapshot() -> TemplateSnapshot:
    """The cached snapshot of the template, read again only if the template has changed."""
    global _cached
    fingerprint = template_fingerprint()
    with _lock:
        if _cached is None or _cached.fingerprint != fingerprint:
            _cached = _snapshot_read(fingerprint)
        return _cached


def template_snapshot_forget() -> None:
    """Drop the cached snapshot (the template has just been migrated in this process)."""
    global _cached
    with _lock:
        _cached = None


def schema_clone(*, schema_name: str) -> None:
    """Create ``schema_name`` as a copy of the template: structure, rows and sequence positions.

    Runs in the caller's transaction (one round trip after the first clone of a process).
    """
    snapshot = template_snapshot()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {_quote(schema_name)}")
    with schema_context(schema_name), connection.cursor() as cursor:
        cursor.execute(snapshot.script(template=settings.TENANT_BASE_SCHEMA, schema_name=schema_name))


# --- Reading the template's catalogue (once per template version) ---------------------------


def _snapshot_read(fingerprint: str) -> TemplateSnapshot:
    template = settings.TENANT_BASE_SCHEMA
    with schema_context(template), connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_namespace WHERE nspname = %s", [template])
        (namespace,) = cursor.fetchone()
        _refuse_unknown_objects(cursor, namespace)
        cursor.execute(
            "SELECT c.oid, c.relname, c.reloptions, obj_description(c.oid, 'pg_class') FROM pg_class c "
            "WHERE c.relnamespace = %s AND c.relkind = 'r' ORDER BY c.relname",
            [namespace],
        )
        tables = cursor.fetchall()
        oids = [oid for oid, *_ in tables]
        names = {oid: name for oid, name, *_ in tables}
        columns = _columns(cursor, oids)
        create_tables, comments = [], []
        for _oid, name, options, comment in tables:
            # Columns with their exact types (vector(384)), defaults, identity, generated expressions,
            # NOT NULL and CHECK constraints, comments and storage, as PostgreSQL stores them (a CHECK
            # re-parsed from its text can come back as a different expression). Keys and indexes
            # keep their names below.
            with_options = f" WITH ({', '.join(options)})" if options else ""
            create_tables.append(
                f"CREATE TABLE {_quote(name)} (LIKE {_quote(template)}.{_quote(name)} "
                f"INCLUDING ALL EXCLUDING INDEXES){with_options}"
            )
            if comment is not None:
                comments.append(f"COMMENT ON TABLE {_quote(name)} IS {_literal(comment)}")
        constraints, foreign_keys = _constraints(cursor, oids, names)
        indexes = _indexes(cursor, oids)
        data, sequences = _rows_and_sequences(cursor, tables, columns)
    applied = schemas_applied([template])[template]
    current = applied is not None and tenant_migration_nodes() <= applied
    return TemplateSnapshot(
        fingerprint=fingerprint,
        migrations_state=tenant_migrations_state() if current else "",
        tables=tuple(create_tables),
        constraints=tuple(constraints),
        indexes=tuple(indexes),
        foreign_keys=tuple(foreign_keys),
        comments=tuple(comments),
        data=tuple(data),
        sequences=tuple(sequences),
    )


@dataclass(frozen=True)
class _Column:
    name: str
    generated: bool
    identity: bool


def _columns(cursor: CursorWrapper, oids: list[int]) -> dict[int, list[_Column]]:
    cursor.execute(
        """
        SELECT a.attrelid, a.attname, a.attidentity <> '', a.attgenerated <> '', pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum
        """,
        [oids],
    )
    columns: dict[int, list[_Column]] = {oid: [] for oid in oids}
    for relid, name, identity, generated, default in cursor.fetchall():
        if default is not None and "nextval(" in default:
            # A serial column's copied default would keep drawing from the template's sequence.
            raise TemplateNotClonable(f"column {name} takes its default from a sequence ({default})")
        columns[relid].append(_Column(name, generated, identity))
    return columns


def _constraints(cursor: CursorWrapper, oids: list[int], names: dict[int, str]) -> tuple[list[str], list[str]]:
    # NOT NULL ('n', PostgreSQL 18) and CHECK constraints come with the columns (LIKE).
    cursor.execute(
        """
        SELECT conrelid, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = ANY(%s) AND contype NOT IN ('n', 'c')
        ORDER BY array_position(ARRAY['p', 'u', 'x', 'f'], contype::text), conrelid, conname
        """,
        [oids],
    )
    constraints: list[str] = []
    foreign_keys: list[str] = []
    for relid, name, kind, definition in cursor.fetchall():
        if kind not in ("p", "u", "x", "f"):
            raise TemplateNotClonable(f"constraint {name} of kind {kind!r}")
        statement = f"ALTER TABLE {_quote(names[relid])} ADD CONSTRAINT {_quote(name)} {definition}"
        (foreign_keys if kind == "f" else constraints).append(statement)
    return constraints, foreign_keys


def _indexes(cursor: CursorWrapper, oids: list[int]) -> list[str]:
    # Indexes that back a primary key, unique or exclusion constraint come with the constraint. The
    # definitions are PostgreSQL's own, as pg_dump reads them (the pretty form can re-parse into a
    # different expression), with the template's table name made unqualified.
    cursor.execute(
        """
        SELECT pg_get_indexdef(i.indexrelid), quote_ident(n.nspname) || '.' || quote_ident(t.relname),
               quote_ident(t.relname)
        FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE i.indrelid = ANY(%s) AND NOT EXISTS (
            SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid
            AND c.contype IN ('p', 'u', 'x'))
        ORDER BY i.indexrelid::regclass::text
        """,
        [oids],
    )
    indexes = []
    for definition, qualified, unqualified in cursor.fetchall():
        head, separator, tail = definition.partition(f" ON {qualified} USING ")
        if not separator:
            raise TemplateNotClonable(f"unexpected index definition: {definition}")
        indexes.append(f"{head} ON {unqualified} USING {tail}")
    return indexes


def _rows_and_sequences(
    cursor: CursorWrapper,
    tables: list[tuple[Any, ...]],
    columns: dict[int, list[_Column]],
) -> tuple[list[tuple[str, str]], list[_Sequence]]:
    data, sequences = [], []
    for oid, name, *_ in tables:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {_quote(name)})")
        if cursor.fetchone()[0]:
            data.append((name, ", ".join(_quote(c.name) for c in columns[oid] if not c.generated)))
        for column in columns[oid]:
            if column.identity:
                cursor.execute(
                    "SELECT format_type(seqtypid, NULL), pg_sequence_last_value(seqrelid) FROM pg_sequence "
                    "WHERE seqrelid = pg_get_serial_sequence(%s, %s)::regclass",
                    [_quote(name), column.name],
                )
                sequences.append(_Sequence(name, column.name, *cursor.fetchone()))
    return data, sequences


@dataclass(frozen=True)
class _Sequence:
    """An identity column's sequence: its type (LIKE makes every one bigint) and where it stands."""

    table: str
    column: str
    data_type: str
    last_value: int | None

    def statements(self, *, schema_name: str) -> list[str]:
        sequence = f"pg_get_serial_sequence({_literal(f'{_quote(schema_name)}.{_quote(self.table)}')}, "
        sequence += f"{_literal(self.column)})"
        statements = []
        if self.data_type != "bigint":
            statements.append(
                f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {self.data_type}', {sequence}); END $$"
            )
        if self.last_value is not None:
            statements.append(f"SELECT setval({sequence}, {int(self.last_value)}, true)")
        return statements


def _refuse_unknown_objects(cursor: CursorWrapper, namespace: int) -> None:
    """Tenant apps make tables, their indexes and identity sequences; anything else must be taught."""
    cursor.execute(
        """
        SELECT 'relation ' || c.relname || ' (' || c.relkind::text || ')' FROM pg_class c
        WHERE c.relnamespace = %(ns)s AND (c.relkind NOT IN ('r', 'i', 'S') OR c.relpersistence <> 'p'
              OR c.relispartition OR (c.relkind = 'S' AND NOT EXISTS (
                  SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'i')))
        UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace = %(ns)s
        UNION ALL SELECT 'type ' || typname FROM pg_type t WHERE typnamespace = %(ns)s AND typrelid = 0
              AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typrelid <> 0)
        UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
              WHERE c.relnamespace = %(ns)s AND NOT g.tgisinternal
        UNION ALL SELECT 'policy ' || polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
              WHERE c.relnamespace = %(ns)s
        UNION ALL SELECT 'statistics ' || stxname FROM pg_statistic_ext WHERE stxnamespace = %(ns)s
        UNION ALL SELECT 'inherited table ' || c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE c.relnamespace = %(ns)s
        """,
        {"ns": namespace},
    )
    unknown = [row[0] for row in cursor.fetchall()]
    if unknown:
        raise TemplateNotClonable(f"the template schema holds objects the clone does not copy: {', '.join(unknown)}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
