"""`manage.py up`: migrate, ensure the demo tenant and operator, then serve HTTP and WebSocket with
one job worker beside the server (restarted if it dies). Ctrl-C or SIGTERM stops the server, the
worker and the embedded database."""

from __future__ import annotations

import signal
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from config.bootstrap import platform_bootstrap, platform_summary
from config.processes import worker_process
from config.serving import UVICORN_OPTIONS


def _exit_on_signal(signum: int, frame: Any) -> None:
    # SystemExit unwinds normally: the worker is stopped and the embedded database's at-exit
    # handler runs (uvicorn re-raises the SIGTERM it caught once it has shut down). A second
    # Ctrl-C while that happens must not cut it short and leave the worker or database behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


class Command(BaseCommand):
    help = "Start Strata on the embedded defaults with a demo tenant (Ctrl-C or SIGTERM stops everything)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-serve", action="store_true", help="Bootstrap only, do not start the server.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a job worker beside the server.")

    def handle(self, *args: Any, **options: Any) -> None:
        signal.signal(signal.SIGTERM, _exit_on_signal)
        signal.signal(signal.SIGINT, _exit_on_signal)
        credentials = platform_bootstrap(data_dir=settings.DATA_DIR)
        self.stdout.write("\n".join(platform_summary(credentials)) + "\n")
        self.stdout.flush()
        if options["no_serve"]:
            return
        config = uvicorn.Config(
            "config.asgi:application",
            host=options["host"],
            port=options["port"],
            lifespan="on",
            log_level="info",
            **UVICORN_OPTIONS,
        )
        if options["no_worker"]:
            uvicorn.Server(config).run()
            return
        with worker_process(
            manage_py=settings.BASE_DIR / "manage.py",
            concurrency=settings.JOBS_WORKER_CONCURRENCY,
            grace=settings.JOBS_SHUTDOWN_GRACE_SECONDS,
        ):
            uvicorn.Server(config).run()
