"""Tenant schemas: a migrated template is kept current and cloned for every new tenant."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context, schema_exists
from pgvector.django import HnswIndex

from core.platform.jobs import job_defer
from tenants.models import Domain, Tenant
from tenants.services.schema_migrations import schema_state_mark, schemas_applied, tenant_migration_nodes
from tenants.services.template_snapshot import schema_clone, template_snapshot_forget

logger = logging.getLogger(__name__)

_PROVISION_LOCK = "strata.tenant_provision"
_template_ready = False  # checked once per process


def provisioning_lock() -> None:
    """Serialise provisioning until the current transaction ends.

    Two signups for one subdomain must see each other's rows, and a spare must be claimed by one
    signup only; the lock is re-entrant within a transaction.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [_PROVISION_LOCK])


def _tenant_app_models() -> Iterator[type]:
    for app_label in settings.TENANT_APPS:
        app_config = apps.get_app_config(app_label.rsplit(".", 1)[-1])
        if app_label in settings.SHARED_APPS:
            continue
        yield from app_config.get_models()


def _template_vector_indexes_restore() -> None:
    """Put back the HNSW indexes that templates made before cloning kept them (they were stripped
    then, because the old clone function lost vector dimensions); a no-op on a current template."""
    template = settings.TENANT_BASE_SCHEMA
    with schema_context(template), connection.schema_editor() as editor:
        for model in _tenant_app_models():
            for index in model._meta.indexes:
                if not isinstance(index, HnswIndex):
                    continue
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT 1 FROM pg_indexes WHERE schemaname = %s AND indexname = %s", [template, index.name]
                    )
                    if cursor.fetchone() is None:
                        editor.add_index(model, index)


def template_is_current() -> bool:
    """Every tenant-app migration on disk is recorded as applied in the template schema."""
    applied = schemas_applied([settings.TENANT_BASE_SCHEMA])[settings.TENANT_BASE_SCHEMA]
    return applied is not None and tenant_migration_nodes() <= applied


def tenant_template_ensure(*, verbosity: int = 0) -> bool:
    """Create or migrate the template schema when it lags behind the code; True if it changed."""
    if template_is_current():
        with transaction.atomic():
            _template_vector_indexes_restore()
            schema_state_mark(schema_names=[settings.TENANT_BASE_SCHEMA])
        return False
    template = settings.TENANT_BASE_SCHEMA
    logger.info("migrating template schema %s", template)
    with schema_context(get_public_schema_name()):
        if not schema_exists(template):
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE SCHEMA "{template}"')
        call_command("migrate_schemas", tenant=True, schema_name=template, interactive=False, verbosity=verbosity)
        with transaction.atomic():
            _template_vector_indexes_restore()
            schema_state_mark(schema_names=[template])
    template_snapshot_forget()
    spares_drop()
    return True


def tenant_template_ensure_once() -> None:
    """Check the template once per process: migrations only change with a deploy, which restarts
    processes (and a clone notices a template changed under it: template_snapshot)."""
    global _template_ready
    if not _template_ready:
        tenant_template_ensure()
        _template_ready = True


def tenant_provision(*, name: str, subdomain: str, schema_name: str, status: str) -> Tenant:
    """Create the Tenant, its Domain and its schema (cloned from the template) atomically.

    Must be called inside ``transaction.atomic`` (the caller owns the transaction, so a later
    failure in signup rolls the schema back too) with the public schema active, after
    ``tenant_template_ensure_once()``.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("tenant_provision must run inside transaction.atomic()")
    provisioning_lock()
    tenant = Tenant(name=name, subdomain=subdomain, schema_name=schema_name, status=status)
    tenant.save()
    Domain.objects.create(domain=f"{subdomain}.{settings.BASE_DOMAIN}", tenant=tenant, is_primary=True)
    if not _spare_claim(schema_name):
        schema_clone(schema_name=schema_name)
    connection.set_schema_to_public()
    if settings.TENANT_SPARE_SCHEMAS:
        job_defer(SPARES_REFILL_JOB)
    return tenant


# --- Warm spares: clones made ahead of time, renamed into place at signup -------------------
SPARE_PREFIX = "spare_"
SPARES_REFILL_JOB = "tenants.spares_refill"


def _spare_names() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY nspname",
            [SPARE_PREFIX.replace("_", r"\_") + "%"],
        )
        return [row[0] for row in cursor.fetchall()]


def _spare_claim(schema_name: str) -> bool:
    """Rename a ready spare schema to ``schema_name`` (under the provisioning lock); False if none."""
    spares = _spare_names()
    if not spares:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER SCHEMA "{spares[0]}" RENAME TO "{schema_name}"')
    return True


def spares_refill(*, target: int | None = None) -> int:
    """Clone the template into spare schemas until ``target`` (TENANT_SPARE_SCHEMAS) are ready."""
    target = settings.TENANT_SPARE_SCHEMAS if target is None else target
    tenant_template_ensure_once()
    made = 0
    with schema_context(get_public_schema_name()):
        while True:
            with transaction.atomic():
                provisioning_lock()
                if len(_spare_names()) >= target:
                    return made
                schema_clone(schema_name=f"{SPARE_PREFIX}{uuid.uuid4().hex[:16]}")
                connection.set_schema_to_public()
            made += 1


def spares_drop() -> int:
    """Drop every spare: they are clones of a template that has just changed."""
    with schema_context(get_public_schema_name()), transaction.atomic():
        provisioning_lock()
        spares = _spare_names()
        with connection.cursor() as cursor:
            for name in spares:
                cursor.execute(f'DROP SCHEMA "{name}" CASCADE')
    return len(spares)


@transaction.atomic
def tenant_public_ensure() -> Tenant:
    """The public tenant answers on the bare BASE_DOMAIN (and 127.0.0.1 for health checks)."""
    public, _ = Tenant.objects.get_or_create(
        schema_name=get_public_schema_name(),
        defaults={"name": "Strata", "subdomain": "public"},
    )
    for host in (settings.BASE_DOMAIN, "127.0.0.1"):
        Domain.objects.get_or_create(
            domain=host, defaults={"tenant": public, "is_primary": host == settings.BASE_DOMAIN}
        )
    return public
