"""`manage.py migrate_platform`: public schema, then the tenant template, then every tenant schema."""

from typing import Any

from django.core.management.base import BaseCommand

from tenants.services.bootstrap import platform_migrate


class Command(BaseCommand):
    help = "Migrate the public schema, the tenant template (cloned for new tenants) and every tenant schema."

    def handle(self, *args: Any, **options: Any) -> None:
        platform_migrate(verbosity=options["verbosity"])
        self.stdout.write(self.style.SUCCESS("Platform migrated."))
