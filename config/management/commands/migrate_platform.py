"""`manage.py migrate_platform`: public schema, then the tenant template, then the tenant schemas that lag."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.services.bootstrap import platform_migrate


class Command(BaseCommand):
    # Operational commands start fast: the system checks import every view (and the SDKs behind them);
    # `manage.py check --deploy` is the build's job.
    requires_system_checks: list[str] = []

    help = (
        "Migrate the public schema, the tenant template (cloned for new tenants) and every tenant schema "
        "that lags; schemas already current are skipped without being opened."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--jobs",
            type=int,
            default=settings.MIGRATE_PARALLEL_JOBS,
            help=(
                "Tenant schemas migrated at once, one connection each: threads replaying SQL, or processes "
                "running Django's migrate (MIGRATE_PARALLEL_JOBS)."
            ),
        )
        parser.add_argument(
            "--verify",
            action="store_true",
            help=(
                "Also read every tenant's django_migrations, not only the schemas whose recorded state lags, "
                "then prove every tenant schema equals the template (tables, columns, constraints, indexes, "
                "recorded migrations)."
            ),
        )
        parser.add_argument(
            "--no-replay",
            action="store_false",
            dest="replay",
            help="Migrate every lagging schema with Django's migrate, even when its new migrations are SQL only.",
        )

    def handle(self, *args: Any, jobs: int, verify: bool, replay: bool, **options: Any) -> None:
        verbosity = options["verbosity"]

        def progress(schema_name: str, error: str | None) -> None:
            if error is not None:
                self.stderr.write(f"{schema_name}: FAILED {error}")
            elif verbosity >= 2:
                self.stdout.write(f"{schema_name}: migrated")

        report = platform_migrate(verbosity=verbosity, jobs=jobs, verify=verify, replay=replay, progress=progress)
        tenants = report.tenants
        self.stdout.write(
            f"public: {'migrated' if report.public_migrated else 'current'}; "
            f"template: {'migrated' if report.template_migrated else 'current'}; "
            f"tenant schemas: {len(tenants.migrated)} migrated ({len(report.replayed)} by replayed SQL), "
            f"{tenants.marked} already current, "
            f"{len(tenants.failed)} failed ({tenants.seconds:.1f} s)"
        )
        if tenants.failed:
            for schema_name, error in sorted(tenants.failed.items()):
                self.stderr.write(f"  {schema_name}: {error}")
            raise CommandError(f"{len(tenants.failed)} tenant schema(s) failed to migrate (each was rolled back).")
        if verify:
            for schema_name, kinds in sorted(report.differs.items()):
                self.stderr.write(f"  {schema_name}: differs from the template in {kinds}")
            if report.differs:
                raise CommandError(f"{len(report.differs)} tenant schema(s) differ from the template.")
            self.stdout.write("Every tenant schema equals the template.")
        self.stdout.write(self.style.SUCCESS("Platform migrated."))
