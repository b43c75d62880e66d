"""The slow ways the benchmarks measure Strata's real paths against; never used by the product."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import close_old_connections, connection
from django_tenants.utils import schema_context
from pgvector.django import HnswIndex

from ai.embedding.embedders import Embedder, get_embedder
from ai.models import Chunk
from tenants.models import Domain, Tenant


def tenant_provision_by_migrations(*, name: str, subdomain: str, schema_name: str) -> Tenant:
    """The slow path, kept for the benchmark that justifies cloning: replay every migration."""
    tenant = Tenant(name=name, subdomain=subdomain, schema_name=schema_name, status=Tenant.Status.ACTIVE)
    tenant.save()
    Domain.objects.create(domain=f"{subdomain}.{settings.BASE_DOMAIN}", tenant=tenant, is_primary=True)
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema_name}"')
    call_command("migrate_schemas", tenant=True, schema_name=schema_name, interactive=False, verbosity=0)
    connection.set_schema_to_public()
    return tenant


def chunks_embed_naively(*, embedder: Embedder | None = None) -> int:
    """The baseline the benchmark compares against: one model call and one save per chunk."""
    embedder = embedder or get_embedder()
    done = 0
    for chunk in Chunk.objects.filter(embedding__isnull=True).order_by("id"):
        # A document embedding, as the batched path makes (a hosted model embeds queries differently).
        (chunk.embedding,) = embedder.embed_documents([chunk.text])
        chunk.embedding_model = embedder.name
        chunk.save(update_fields=["embedding", "embedding_model"])
        done += 1
    return done


def clone_function_install() -> None:
    """The clone function the product used before template snapshots: pg-clone-schema 2.18, bundled in
    django-tenants 4.0.1 behind a private method (the benchmark's baseline only)."""
    from django_tenants.clone import CloneSchema

    CloneSchema()._create_clone_schema_function()


def schema_clone_by_clone_function(*, schema_name: str) -> None:
    """The old clone: pg-clone-schema's catalogue walk, then vector(384) and the HNSW index put back (the
    function loses vector dimensions, so the template's own HNSW index is set aside around the call)."""
    template = settings.TENANT_BASE_SCHEMA
    hnsw = [(model, index) for model in (Chunk,) for index in model._meta.indexes if isinstance(index, HnswIndex)]
    with connection.cursor() as cursor:
        for _model, index in hnsw:
            cursor.execute(f'DROP INDEX IF EXISTS "{template}"."{index.name}"')
        cursor.execute("SELECT public.clone_schema(%s, %s, 'DATA', 'NOOWNER', 'NOACL')", [template, schema_name])
    for target in (template, schema_name):
        with schema_context(target), connection.schema_editor(atomic=False) as editor:
            if target == schema_name:
                editor.execute('ALTER TABLE "ai_chunk" ALTER COLUMN "embedding" TYPE vector(384)')
            for model, index in hnsw:
                editor.add_index(model, index)
    connection.set_schema_to_public()


def tenant_provision_by_clone_function(*, name: str, subdomain: str, schema_name: str) -> Tenant:
    tenant = Tenant(name=name, subdomain=subdomain, schema_name=schema_name, status=Tenant.Status.ACTIVE)
    tenant.save()
    Domain.objects.create(domain=f"{subdomain}.{settings.BASE_DOMAIN}", tenant=tenant, is_primary=True)
    schema_clone_by_clone_function(schema_name=schema_name)
    return tenant


class InProcessPool:
    """The job runner Strata had before procrastinate: a thread pool inside the web process (no
    durability: a job in flight or queued dies with the process)."""

    def __init__(self, *, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="old-task")

    def submit(self, task: Callable[..., Any], *, schema_name: str, **kwargs: Any) -> Future[None]:
        return self._executor.submit(self._run, task, schema_name, kwargs)

    @staticmethod
    def _run(task: Callable[..., Any], schema_name: str, kwargs: dict[str, Any]) -> None:
        close_old_connections()
        try:
            with schema_context(schema_name):
                task(**kwargs)
        finally:
            connection.close()

    @staticmethod
    def wait(futures: list[Future[None]]) -> None:
        for future in futures:
            future.result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
