"""Bring a platform up to date and make sure the demo tenant and operator account exist."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django_tenants.utils import get_public_schema_name, schema_context

from core.models import User
from tenants.models import Tenant
from tenants.services.provisioning import spares_refill, tenant_public_ensure, tenant_template_ensure
from tenants.services.signup import tenant_signup

DEMO_SUBDOMAIN = "demo"


@dataclass(frozen=True)
class Credentials:
    operator_email: str
    operator_password: str
    demo_email: str
    demo_password: str


def _credentials(data_dir: Path) -> Credentials:
    # Generated once per data folder so a second run prints the same, still valid, passwords.
    path = data_dir / "credentials.json"
    if path.exists():
        return Credentials(**json.loads(path.read_text()))
    credentials = Credentials(
        operator_email="admin@example.com",
        operator_password=secrets.token_urlsafe(12),
        demo_email="owner@demo.example.com",
        demo_password=secrets.token_urlsafe(12),
    )
    path.write_text(json.dumps(credentials.__dict__, indent=2))
    path.chmod(0o600)
    return credentials


def platform_migrate(*, verbosity: int = 0) -> None:
    """Migrate public, then the template, then every tenant schema."""
    call_command("migrate_schemas", shared=True, interactive=False, verbosity=verbosity)
    tenant_public_ensure()
    tenant_template_ensure(verbosity=verbosity)
    call_command("migrate_schemas", tenant=True, interactive=False, verbosity=verbosity)
    spares_refill()


def platform_bootstrap(*, data_dir: Path, verbosity: int = 0) -> Credentials:
    """Migrate, then create the operator superuser and the demo tenant if they are missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    platform_migrate(verbosity=verbosity)
    credentials = _credentials(data_dir)
    with schema_context(get_public_schema_name()):
        if not User.objects.filter(email=credentials.operator_email).exists():
            User.objects.create_superuser(credentials.operator_email, credentials.operator_password)
        if not Tenant.objects.filter(subdomain=DEMO_SUBDOMAIN).exists():
            tenant_signup(
                organisation="Demo Organisation",
                subdomain=DEMO_SUBDOMAIN,
                email=credentials.demo_email,
                password=credentials.demo_password,
                plan="free",
            )
    return credentials


def platform_urls() -> tuple[str, str]:
    port = f":{settings.PORT}" if settings.PORT not in (80, 443) else ""
    return (
        f"{settings.SITE_SCHEME}://{settings.BASE_DOMAIN}{port}/",
        f"{settings.SITE_SCHEME}://{DEMO_SUBDOMAIN}.{settings.BASE_DOMAIN}{port}/",
    )
