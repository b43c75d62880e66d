"""Check the audit log's hash chains: ``manage.py audit_verify [--tenant SUBDOMAIN_OR_ID]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.audit.models import AuditEntry
from tenants.audit.services import audit_tenant_ids, audit_verify
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Verify every tenant's audit chain (or one tenant's); exits 1 at the first bad entry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="a subdomain or tenant id (also of a deleted tenant)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant_ids = [self._tenant_id(options["tenant"])] if options["tenant"] else audit_tenant_ids()
        bad = 0
        for tenant_id in tenant_ids:
            result = audit_verify(tenant_id=tenant_id)
            if result.ok:
                self.stdout.write(f"tenant {tenant_id}: {result.checked} entries, chain intact")
            else:
                bad += 1
                self.stderr.write(
                    f"tenant {tenant_id}: entry {result.bad_id} is bad ({result.reason}); "
                    f"{result.checked} entries before it verified"
                )
        if bad:
            raise CommandError(f"{bad} tenant chain(s) broken", returncode=1)

    def _tenant_id(self, value: str) -> int:
        if value.isdigit():
            return int(value)
        tenant = Tenant.objects.filter(subdomain=value).first()
        if tenant is not None:
            return int(tenant.pk)
        # A closed tenant's row may be gone; its entries keep the subdomain.
        found = AuditEntry.objects.filter(tenant_subdomain=value).order_by("-id").values_list("tenant_id", flat=True)
        if not found:
            raise CommandError(f"No tenant or audit entries for {value!r}.")
        return int(found[0])
