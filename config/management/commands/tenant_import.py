"""``manage.py tenant_import <file> --subdomain <new>``: restore an archive made by tenant_export into
a new tenant, after checking its format version, its migrations and every file's checksum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.tenant_archive import ArchiveError, tenant_import


class Command(BaseCommand):
    help = "Restore a tenant archive (manage.py tenant_export) into a new tenant; users are matched by e-mail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--subdomain", required=True, help="The new tenant's subdomain (must be free).")
        parser.add_argument("--name", default=None, help="The new tenant's name (default: the archived one).")

    def handle(self, *args: Any, file: Path, subdomain: str, name: str | None, **options: Any) -> None:
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        try:
            tenant = tenant_import(path=file, subdomain=subdomain, name=name)
        except ArchiveError as exc:
            raise CommandError(f"Refused: {exc}") from exc
        self.stdout.write(f"Imported into {tenant.subdomain} ({tenant.url}).")
