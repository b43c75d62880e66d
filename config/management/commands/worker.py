"""`manage.py worker`: run a background job worker (as many as you like, on any machine that
reaches the database)."""

from __future__ import annotations

import functools
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from ai.embedding.embedders import embedder_warm, embedding_threads_use, worker_embedding_threads
from core.platform.jobs import worker_process_exit, worker_run


class Command(BaseCommand):
    help = "Run a job worker: ingestion, e-mail, billing and maintenance jobs (SIGTERM stops it cleanly)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.JOBS_WORKER_CONCURRENCY,
            help="Jobs run at once by this process (default JOBS_WORKER_CONCURRENCY).",
        )
        parser.add_argument("--queues", default="", help="Comma-separated queues to serve (default: all).")
        parser.add_argument("--name", default=None, help="Worker name shown in logs and the admin.")

    def handle(self, *args: Any, concurrency: int, queues: str, name: str | None, **options: Any) -> None:
        # Ingestion jobs embed: on every core (not a web process's one thread), and the model loads
        # while the worker connects, not in the first job.
        embedding_threads_use(worker_embedding_threads())
        warm = functools.partial(embedder_warm, documents=True)
        threading.Thread(target=warm, name="embedder-warm", daemon=True).start()
        worker_run(concurrency=concurrency, queues=[q for q in queues.split(",") if q] or None, name=name)
        worker_process_exit()
