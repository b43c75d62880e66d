"""The slow ways the benchmarks measure Strata's real paths against; never used by the product."""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from ai.embedders import Embedder, get_embedder
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
