"""`manage.py up`: migrate, ensure the demo tenant and operator, then serve HTTP and WebSocket with
one job worker beside the server (restarted if it dies), and say "up" once a search answers.
Ctrl-C or SIGTERM stops the server, the worker and the embedded database."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from config.bootstrap import DEMO_SUBDOMAIN, Credentials, platform_bootstrap, platform_summary
from config.processes import worker_process
from config.serving import UVICORN_OPTIONS


def _exit_on_signal(signum: int, frame: Any) -> None:
    # SystemExit unwinds normally: the worker is stopped and the embedded database's at-exit
    # handler runs (uvicorn re-raises the SIGTERM it caught once it has shut down). A second
    # Ctrl-C while that happens must not cut it short and leave the worker or database behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


# How long `up` waits for the first search before saying it is not up (a cold model on a slow disk).
UP_DEADLINE_SECONDS = 600


def _request(url: str, *, host: str, body: dict[str, Any] | None = None, token: str = "") -> tuple[int, Any]:
    headers = {
        "Host": host,
        "Content-Type": "application/json",
        **({"Authorization": f"Token {token}"} if token else {}),
    }
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")  # noqa: S310 - our own server
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None


def _say_up_when_search_answers(
    *, port: int, credentials: Credentials, started: float, say: Callable[[str], None]
) -> None:
    """ "Up" means a person can search: /readyz answers 200 (the database, the embedding model
    loaded and warm) and a search on the demo tenant, through HTTP as a client makes it, answers."""
    base, host = f"http://127.0.0.1:{port}", f"{DEMO_SUBDOMAIN}.{settings.BASE_DOMAIN}:{port}"
    deadline = started + UP_DEADLINE_SECONDS
    while _request(f"{base}/readyz", host=host)[0] != 200:
        if time.monotonic() > deadline:
            say(f"Strata is NOT up: /readyz still says starting after {UP_DEADLINE_SECONDS} s (see the log above).")
            return
        time.sleep(0.25)
    ready = time.monotonic() - started
    login = {"email": credentials.demo_email, "password": credentials.demo_password}
    status, body = _request(f"{base}/api/auth/login/", host=host, body=login)
    searched = time.monotonic()
    if status == 200:
        status, _ = _request(f"{base}/api/search/", host=host, body={"query": "warm up"}, token=body["key"])
    if status != 200:
        say(f"Strata is NOT up: the demo tenant's search answered {status or 'nothing'} (see the log above).")
        return
    say(
        f"Strata is up: ready {ready:.1f} s after starting, and a first search answered in "
        f"{time.monotonic() - searched:.1f} s."
    )


class Command(BaseCommand):
    help = "Start Strata on the embedded defaults with a demo tenant (Ctrl-C or SIGTERM stops everything)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--no-serve", action="store_true", help="Bootstrap only, do not start the server.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start a job worker beside the server.")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
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

        def say(line: str) -> None:
            self.stdout.write(line + "\n")
            self.stdout.flush()

        threading.Thread(
            target=_say_up_when_search_answers,
            kwargs={"port": options["port"], "credentials": credentials, "started": started, "say": say},
            name="up-announcer",
            daemon=True,
        ).start()
        if options["no_worker"]:
            uvicorn.Server(config).run()
            return
        with worker_process(
            manage_py=settings.BASE_DIR / "manage.py",
            concurrency=settings.JOBS_WORKER_CONCURRENCY,
            grace=settings.JOBS_SHUTDOWN_GRACE_SECONDS,
        ):
            uvicorn.Server(config).run()
