"""Bring every schema up to date: public, then the tenant template, then every tenant."""

from __future__ import annotations

from django.core.management import call_command

from tenants.services.provisioning import spares_refill, tenant_public_ensure, tenant_template_ensure


def platform_migrate(*, verbosity: int = 0) -> None:
    """Migrate public, then the template, then every tenant schema."""
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
    tenant_public_ensure()
    tenant_template_ensure(verbosity=verbosity)
    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=verbosity)
    spares_refill()
