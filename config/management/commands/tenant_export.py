"""``manage.py tenant_export <subdomain> <file>``: one workspace as a versioned, checksummed archive
(config.tenant_archive says what is in it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from config.tenant_archive import ArchiveError, tenant_export
from tenants.audit.services import Action, Operator, audit_record
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Write one tenant's data (schema tables, original uploads, its public rows) to an archive file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subdomain")
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, subdomain: str, file: Path, **options: Any) -> None:
        tenant = Tenant.objects.filter(subdomain=subdomain.strip().lower()).first()
        if tenant is None:
            raise CommandError(f"No tenant with the subdomain '{subdomain}'.")
        part = file.with_name(f"{file.name}.part")
        try:
            with part.open("wb") as out:
                manifest = tenant_export(tenant=tenant, out=out)
            part.replace(file)  # a reader never sees half an archive under the real name
        except ArchiveError as exc:
            part.unlink(missing_ok=True)
            raise CommandError(str(exc)) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        with transaction.atomic():
            audit_record(tenant=tenant, action=Action.EXPORT_REQUESTED, actor=Operator(), target=f"file {file.name}")
        rows = sum(table["rows"] for table in manifest["tables"].values())
        self.stdout.write(
            f"Exported {tenant.subdomain}: {rows} rows in {len(manifest['tables'])} tables, "
            f"{len(manifest['files'])} files, to {file} (format version {manifest['version']})."
        )
