"""Send pending usage to Stripe Billing Meters now (the periodic job does the same on a timer)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.services import billing_enabled, usage_sync
from billing.services.meter import usage_pending_count


class Command(BaseCommand):
    help = "Send pending usage events to Stripe as meter events; safe to run at any time, and twice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=2000, help="Most events to send in one run (default 2000).")
        parser.add_argument("--all", action="store_true", help="Keep going in runs of --limit until nothing is due.")

    def handle(self, *args: Any, limit: int, all: bool, **options: Any) -> None:  # noqa: A002 - the option's name
        if not billing_enabled():
            raise CommandError("STRIPE_SECRET_KEY is not set: usage is recorded locally and not sent anywhere.")
        totals = {"sent": 0, "duplicates": 0, "skipped": 0, "failed": 0, "deferred": 0}
        while True:
            report = usage_sync(limit=limit)
            for key in totals:
                totals[key] += getattr(report, key)
            if report.stopped or not all or report.calls < limit:
                break
        summary = ", ".join(f"{key} {value}" for key, value in totals.items())
        self.stdout.write(f"{summary}; {usage_pending_count()} still pending")
        if report.stopped:
            self.stderr.write(f"stopped early: {report.stopped}")
