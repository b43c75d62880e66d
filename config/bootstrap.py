"""``manage.py up``'s set-up: a migrated platform with an operator account and a demo tenant with sample documents."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django_tenants.utils import get_public_schema_name, schema_context

from config.demo import demo_documents_seed
from config.signup import tenant_signup
from core.models import User
from tenants.models import Tenant, public_url, tenant_url
from tenants.services.bootstrap import platform_migrate
from tenants.services.provisioning import tenant_public_ensure
from tenants.services.schema_migrations import platform_pending

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


def platform_bootstrap(*, data_dir: Path, verbosity: int = 0) -> Credentials:
    """Migrate if anything is pending (decided by one query, so a restart with thousands of tenants
    starts in seconds), then create the operator superuser and the demo tenant if they are missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if platform_pending().nothing:
        tenant_public_ensure()
    else:
        report = platform_migrate(verbosity=verbosity)
        if not report.ok:
            raise RuntimeError(f"Tenant schemas failed to migrate: {report.tenants.failed}")
    credentials = _credentials(data_dir)
    with schema_context(get_public_schema_name()):
        if not User.objects.filter(email=credentials.operator_email).exists():
            User.objects.create_superuser(credentials.operator_email, credentials.operator_password)
        if not Tenant.objects.filter(subdomain=DEMO_SUBDOMAIN).exists():
            demo = tenant_signup(
                organisation="Demo Organisation",
                subdomain=DEMO_SUBDOMAIN,
                email=credentials.demo_email,
                password=credentials.demo_password,
                plan="free",
            )
            # Only when the tenant is new: samples someone deleted stay deleted.
            demo_documents_seed(tenant=demo.tenant, user=demo.user)
    return credentials


def mail_mode() -> str:
    """Where e-mail goes, as ``up`` reports it."""
    backend = settings.EMAIL_BACKEND
    if backend.endswith("EmlFileBackend") or ".filebased." in backend:
        return f"files in {settings.EMAIL_FILE_PATH}/ (one .eml per message; set EMAIL_URL to send)"
    if ".console." in backend:
        return "printed on the worker's output"
    if ".locmem." in backend:
        return "kept in memory (tests)"
    return f"sent by SMTP through {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def platform_summary(credentials: Credentials) -> list[str]:
    """What ``manage.py up`` prints: where to go, who to log in as, and which mode each part runs in."""
    public, demo_url = public_url(), tenant_url(DEMO_SUBDOMAIN)
    operator = f"{credentials.operator_email} / {credentials.operator_password}"
    answers = "offline (no ANTHROPIC_API_KEY)"
    if settings.ANTHROPIC_API_KEY:
        answers = f"Claude ({settings.ANTHROPIC_MODEL})"
    billing = "local only (no STRIPE_SECRET_KEY: usage and quotas, free plans only, no payments)"
    if settings.STRIPE_SECRET_KEY:
        billing = f"Stripe ({'test' if settings.STRIPE_SECRET_KEY.startswith('sk_test') else 'live'} keys)"
    return [
        "",
        'Strata is starting (it says "Strata is up" once a search answers).',
        f"  Public site and signup: {public}",
        f"  Operator admin:         {public}admin/   {operator}",
        f"  Demo tenant:            {demo_url}   {credentials.demo_email} / {credentials.demo_password}",
        f"  Demo tenant admin:      {demo_url}admin/",
        f"  Answers:                {answers}",
        f"  Billing:                {billing}",
        f"  Embeddings:             {settings.EMBEDDING_BACKEND} ({settings.EMBEDDING_MODEL})",
        f"  Mail:                   {mail_mode()}",
        *(["  Debug pages:            on (DEBUG=true); never in production"] if settings.DEBUG else []),
        "  Press Ctrl-C to stop the server, the job worker and the embedded database.",
        "",
    ]
