"""`manage.py export_training <subdomain> [--since D] [--until D] [--model M] [--collection ID] [--output F]`:
a tenant's flagged agent actions as JSON Lines in the Messages API shape, streamed."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import tenant_context

from ai.services.training_export import training_actions, training_export_write
from tenants.models import Tenant


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = (
        "Write a tenant's actions flagged for training as JSON Lines ({system, messages, metadata}; the "
        "reviewer's corrected output replaces the model's). Streams: memory stays flat at any size."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("subdomain")
        parser.add_argument("--since", type=date.fromisoformat, help="From this day (YYYY-MM-DD), inclusive.")
        parser.add_argument("--until", type=date.fromisoformat, help="To this day (YYYY-MM-DD), inclusive.")
        parser.add_argument("--model", default="", help="Only this model's actions.")
        parser.add_argument("--collection", type=int, help="Only actions about this collection's documents.")
        parser.add_argument("--output", default="-", help="A file to write (default: standard output).")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(subdomain=options["subdomain"]).first()
        if tenant is None or tenant.is_public:
            raise CommandError(f"No workspace {options['subdomain']!r}.")
        with tenant_context(tenant):
            actions = training_actions(
                since=options["since"],
                until=options["until"],
                model=options["model"],
                collection_id=options["collection"],
            )
            if options["output"] == "-":
                count = training_export_write(actions=actions, out=self.stdout)  # type: ignore[arg-type]
            else:
                with open(options["output"], "w", encoding="utf-8") as out:
                    count = training_export_write(actions=actions, out=out)
        self.stderr.write(f"Exported {count} action(s).")
