"""The audit log app: a public-schema, append-only, hash-chained record of who did what in a tenant."""

from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "tenants.audit"
    label = "audit"
    verbose_name = "Audit log"

    def ready(self) -> None:
        from tenants.audit import signals  # noqa: F401 - connects the sign-in receivers
