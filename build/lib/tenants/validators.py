"""Rules for the subdomain an organisation picks."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

SUBDOMAIN_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38})[a-z0-9]$")

RESERVED_SUBDOMAINS = frozenset(
    {
        "admin",
        "api",
        "app",
        "assets",
        "auth",
        "billing",
        "blog",
        "cdn",
        "dashboard",
        "demo-admin",
        "dev",
        "docs",
        "email",
        "ftp",
        "help",
        "imap",
        "internal",
        "localhost",
        "login",
        "mail",
        "media",
        "mx",
        "ns1",
        "ns2",
        "pop",
        "public",
        "root",
        "smtp",
        "static",
        "status",
        "staging",
        "support",
        "system",
        "test",
        "webmail",
        "www",
        "signup",
        "template",
        "tenant-template",
    }
)


def validate_subdomain(value: str) -> None:
    """A DNS label: lower-case letters, digits and hyphens, 3-40 chars, no hyphen at the ends."""
    if value != value.strip().lower() or not SUBDOMAIN_RE.match(value):
        raise ValidationError(
            "Use 3-40 lower-case letters, digits or hyphens, not starting or ending with a hyphen.",
            code="invalid_subdomain",
        )
    if value in RESERVED_SUBDOMAINS:
        raise ValidationError(f"'{value}' is reserved; please choose another subdomain.", code="reserved_subdomain")
    if "--" in value[2:4] and value.startswith("xn"):
        raise ValidationError("Punycode subdomains are not supported.", code="invalid_subdomain")


def schema_name_for(subdomain: str) -> str:
    # Hyphens are not allowed unquoted in schema names; subdomains never contain '_',
    # so the mapping stays one-to-one. The prefix keeps clear of pg_* and public.
    return "t_" + subdomain.replace("-", "_")
