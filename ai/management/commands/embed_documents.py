"""`manage.py embed_documents [--schema S] [--reembed]`: embed chunks that lack (current) embeddings."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django_tenants.utils import get_public_schema_name, schema_context
from tqdm import tqdm

from ai.embedding.embedders import bulk_embedding, get_embedder
from ai.selectors import schemas_with_embedding_work
from ai.services.chunk_embeddings import chunks_embed_pending
from tenants.models import Tenant


class Command(BaseCommand):
    # Operational commands start fast: the system checks import every view (and the SDKs behind them);
    # `manage.py check --deploy` is the build's job.
    requires_system_checks: list[str] = []

    help = (
        "Embed every chunk without an embedding, for one tenant (--schema) or all; "
        "safe to re-run after an interruption."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--schema", help="Only this tenant schema (default: every tenant).")
        parser.add_argument("--batch-size", type=int, default=256)
        parser.add_argument(
            "--reembed", action="store_true", help="Re-embed chunks made by another model (after a model change)."
        )
        parser.add_argument(
            "--threads", type=int, default=None, help="CPU threads for the local model (default: every core)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.perf_counter()
        tenants = Tenant.objects.exclude(schema_name=get_public_schema_name())
        if options["schema"]:
            tenants = tenants.filter(schema_name=options["schema"])
            if not tenants.exists():
                raise CommandError(f"No tenant with schema {options['schema']!r}.")
        schema_names = list(tenants.order_by("schema_name").values_list("schema_name", flat=True))
        embedder = get_embedder()  # no model loaded yet: only its name is needed to find the work
        work = schemas_with_embedding_work(
            schema_names=schema_names, other_than_model=embedder.name if options["reembed"] else None
        )
        grand_total = 0
        if work:
            if hasattr(embedder, "load"):
                embedder.load()  # before bulk mode: loading sets the serving thread count
            with bulk_embedding(threads=options["threads"]):
                for schema_name in work:
                    grand_total += self._embed_tenant(schema_name, options)
        elif options["schema"]:
            self.stdout.write(f"{options['schema']}: embedded 0 chunk(s)")
        self.stdout.write(
            self.style.SUCCESS(
                f"Done: {grand_total} chunk(s) embedded; {len(work)} of {len(schema_names)} tenant(s) had work "
                f"({time.perf_counter() - started:.1f} s)."
            )
        )

    def _embed_tenant(self, schema_name: str, options: dict[str, Any]) -> int:
        with schema_context(schema_name):
            bar = tqdm(desc=schema_name, unit="chunk", file=_RawOutput(self.stderr), disable=options["verbosity"] == 0)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            embedded = chunks_embed_pending(
                batch_size=options["batch_size"], reembed=options["reembed"], progress=progress
            )
            bar.close()
        self.stdout.write(f"{schema_name}: embedded {embedded} chunk(s)")
        return embedded


class _RawOutput:
    """The command's stderr as a plain stream for tqdm: its carriage returns pass through as
    written (OutputWrapper.write would end every write with a newline)."""

    def __init__(self, output: OutputWrapper) -> None:
        self.output = output

    def write(self, text: str) -> None:
        self.output.write(text, ending="")

    def flush(self) -> None:
        self.output.flush()
