"""`manage.py billing_jobs`: run the billing periodic job in the foreground (one process per deployment)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.services import billing_enabled
from billing.tasks import billing_jobs_run_once


class Command(BaseCommand):
    help = (
        "Sync usage to Stripe Billing Meters and enforce the past-due grace period every BILLING_JOBS_INTERVAL_SECONDS."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        if not billing_enabled():
            raise CommandError("Billing is not configured (set STRIPE_SECRET_KEY).")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.is_set():
            report = billing_jobs_run_once()
            self.stdout.write(str(report))
            stop.wait(settings.BILLING_JOBS_INTERVAL_SECONDS)
