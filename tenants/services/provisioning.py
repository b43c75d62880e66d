"""Tenant schemas: a migrated template is kept current and cloned for every new tenant."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django_tenants.clone import CloneSchema
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists
from pgvector.django import HnswIndex, VectorField

from tenants.models import Domain, Tenant

logger = logging.getLogger(__name__)

_PROVISION_LOCK = "strata.tenant_provision"
_template_checked_at: float | None = None


def provisioning_lock() -> None:
    """Serialise provisioning until the current transaction ends.

    CloneSchema re-creates its SQL function on every call, and two signups for one
    subdomain must see each other's rows; the lock is re-entrant within a transaction.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_PROVISION_LOCK])


def _tenant_app_models() -> Iterator[type]:
    for app_label in settings.TENANT_APPS:
        app_config = apps.get_app_config(app_label.rsplit(".", 1)[-1])
        if app_label in settings.SHARED_APPS:
            continue
        yield from app_config.get_models()


def _vector_columns() -> Iterator[tuple[type, VectorField]]:
    for model in _tenant_app_models():
        for field in model._meta.local_fields:
            if isinstance(field, VectorField) and field.dimensions:
                yield model, field


def _hnsw_indexes() -> Iterator[tuple[type, HnswIndex]]:
    for model in _tenant_app_models():
        for index in model._meta.indexes:
            if isinstance(index, HnswIndex):
                yield model, index


def _template_strip_vector_indexes() -> None:
    """The bundled clone function turns vector(n) into plain vector, and an HNSW index on a
    dimensionless column can't be recreated, so the template keeps none (see DESIGN.md)."""
    with schema_context(settings.TENANT_BASE_SCHEMA), connection.schema_editor() as editor:
        for _model, index in _hnsw_indexes():
            editor.execute(f'DROP INDEX IF EXISTS "{index.name}"')


def _restore_vector_columns(schema_name: str) -> None:
    """Give the clone back its vector dimensions and its (empty, so instant) HNSW indexes."""
    with schema_context(schema_name), connection.schema_editor(atomic=False) as editor:
        for model, field in _vector_columns():
            editor.execute(
                f'ALTER TABLE "{model._meta.db_table}" ALTER COLUMN "{field.column}" '
                f"TYPE vector({int(field.dimensions)})"
            )
        for model, index in _hnsw_indexes():
            editor.add_index(model, index)


def _tenant_migration_leaves() -> set[tuple[str, str]]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    tenant_labels = {label.rsplit(".", 1)[-1] for label in settings.TENANT_APPS}
    return {node for node in loader.graph.nodes if node[0] in tenant_labels}


def template_is_current() -> bool:
    """Every tenant-app migration on disk is recorded as applied in the template schema."""
    if not schema_exists(settings.TENANT_BASE_SCHEMA):
        return False
    with schema_context(settings.TENANT_BASE_SCHEMA):
        recorder = MigrationRecorder(connection)
        if not recorder.has_table():
            return False
        applied = set(recorder.applied_migrations())
    return _tenant_migration_leaves() <= applied


def tenant_template_ensure(*, verbosity: int = 0) -> bool:
    """Create or migrate the template schema when it lags behind the code; True if it changed."""
    global _template_checked_at
    if template_is_current():
        _template_checked_at = time.monotonic()
        return False
    template = settings.TENANT_BASE_SCHEMA
    logger.info("migrating template schema %s", template)
    with schema_context(get_public_schema_name()):
        if not schema_exists(template):
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE SCHEMA "{template}"')
        call_command("migrate_schemas", tenant=True, schema_name=template, interactive=False, verbosity=verbosity)
        _template_strip_vector_indexes()
    _template_checked_at = time.monotonic()
    return True


def tenant_template_ensure_once() -> None:
    """Check the template once per process: migrations only change with a deploy (a restart)."""
    if _template_checked_at is None:
        tenant_template_ensure()


def tenant_provision(*, name: str, subdomain: str, schema_name: str, status: str, plan=None) -> Tenant:
    """Create the Tenant, its Domain and its schema (cloned from the template) atomically.

    Must be called inside ``transaction.atomic`` (the caller owns the transaction, so a later
    failure in signup rolls the schema back too) with the public schema active, after
    ``tenant_template_ensure_once()``.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("tenant_provision must run inside transaction.atomic()")
    provisioning_lock()
    tenant = Tenant(name=name, subdomain=subdomain, schema_name=schema_name, status=status, plan=plan)
    tenant.save()
    Domain.objects.create(domain=f"{subdomain}.{settings.BASE_DOMAIN}", tenant=tenant, is_primary=True)
    CloneSchema().clone_schema(settings.TENANT_BASE_SCHEMA, schema_name, "DATA", set_connection=False)
    _restore_vector_columns(schema_name)
    connection.set_schema_to_public()
    return tenant


def tenant_provision_by_migrations(*, name: str, subdomain: str, schema_name: str) -> Tenant:
    """The slow path, kept for the benchmark that justifies cloning: replay every migration."""
    tenant = Tenant(name=name, subdomain=subdomain, schema_name=schema_name, status=Tenant.Status.ACTIVE)
    tenant.save()
    Domain.objects.create(domain=f"{subdomain}.{settings.BASE_DOMAIN}", tenant=tenant, is_primary=True)
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema_name}"')
    call_command("migrate_schemas", tenant=True, schema_name=schema_name, interactive=False, verbosity=0)
    connection.set_schema_to_public()
    return tenant


@transaction.atomic
def tenant_public_ensure() -> Tenant:
    """The public tenant answers on the bare BASE_DOMAIN (and 127.0.0.1 for health checks)."""
    public, _ = Tenant.objects.get_or_create(
        schema_name=get_public_schema_name(),
        defaults={"name": "Strata", "subdomain": "public"},
    )
    for host in (settings.BASE_DOMAIN, "127.0.0.1"):
        Domain.objects.get_or_create(domain=host, defaults={"tenant": public, "is_primary": host == settings.BASE_DOMAIN})
    return public
