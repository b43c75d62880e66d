"""`manage.py jobs_check`: is a worker running? Defers a no-op job and times its round trip."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.platform.jobs import job_round_trip


class Command(BaseCommand):
    help = "Defer a no-op job and wait for a worker to run it; prints the round trip (fails after --timeout)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=10.0, help="Seconds to wait for a worker (default 10).")

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        started = time.perf_counter()
        if not job_round_trip(timeout=timeout):
            raise CommandError(f"No worker ran the job within {timeout:g} s: is `manage.py worker` running?")
        self.stdout.write(f"A worker ran the job in {(time.perf_counter() - started) * 1000:.1f} ms.")
