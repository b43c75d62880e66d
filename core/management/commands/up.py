"""`manage.py up`: migrate, ensure the demo tenant and operator, then serve HTTP and WebSocket."""

from __future__ import annotations

from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from tenants.services.bootstrap import platform_bootstrap, platform_urls


class Command(BaseCommand):
    help = "Start Strata on the embedded defaults with a demo tenant (Ctrl-C stops it and the database)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-serve", action="store_true", help="Bootstrap only, do not start the server.")

    def handle(self, *args: Any, **options: Any) -> None:
        credentials = platform_bootstrap(data_dir=settings.DATA_DIR, verbosity=0)
        public_url, demo_url = platform_urls()
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Strata is up.",
                    f"  Public site and signup: {public_url}",
                    f"  Operator admin:         {public_url}admin/   {credentials.operator_email} / {credentials.operator_password}",
                    f"  Demo tenant:            {demo_url}   {credentials.demo_email} / {credentials.demo_password}",
                    f"  Demo tenant admin:      {demo_url}admin/",
                    "  Press Ctrl-C to stop the server and the embedded database.",
                    "",
                ]
            )
        )
        self.stdout.flush()
        if options["no_serve"]:
            return
        uvicorn.run(
            "core.asgi:application",
            host=options["host"],
            port=options["port"],
            lifespan="off",
            log_level="info",
            ws="websockets-sansio",
        )
