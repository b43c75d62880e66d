"""Builders for tenant-schema AI rows; call the factories inside a tenant_context."""

from __future__ import annotations

import uuid

import factory
import numpy as np
from django.db import connection, transaction
from django_tenants.utils import get_public_schema_name, schema_context, tenant_context
from rest_framework.authtoken.models import Token

from ai.access import Reader, reader_of
from ai.models import AgentAction, Chunk, Document
from billing.models import Plan
from billing.services import subscription_start
from core.models import User
from tenants.models import Membership, Tenant
from tenants.services import tenant_provision
from tenants.validators import schema_name_for
from tests.conftest import World
from tests.factories import PASSWORD

DIMENSIONS = 384


class DocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Document

    title = factory.Sequence(lambda n: f"Document {n}")
    content = factory.LazyAttribute(lambda document: f"The text of {document.title}.")
    status = Document.Status.READY


class ChunkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Chunk

    document = factory.SubFactory(DocumentFactory)
    collection = factory.SelfAttribute("document.collection")  # as ingestion files it
    position = factory.Sequence(int)
    text = factory.Sequence(lambda n: f"Chunk number {n} talks about topic {n % 7}.")
    embedding = None
    embedding_model = ""


class AgentActionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentAction

    agent_type = AgentAction.AgentType.SUMMARISE
    status = AgentAction.Status.OK
    provider = "anthropic"
    model = "claude-sonnet-4-6"
    input_prompt = factory.Sequence(lambda n: f"Prompt number {n}")
    output_text = factory.Sequence(lambda n: f"Output number {n}")
    input_tokens = 100
    output_tokens = 20


def world_create(name: str = "Initech") -> World:
    """A tenant with an owner and a member, under a unique subdomain.

    The session-wide acme and globex also hold rows that live-server tests commit; a module
    whose tests count a tenant's documents, chunks or AI actions creates its own pair once
    (committed, left in place like ``committed_tenants``), and each test's rows roll back.
    Cloning a schema for every test would bloat the catalog and slow the whole suite down.
    Passwords are left unusable (hashing costs a third of a second): log in with force_login.
    """
    subdomain = f"{name.lower()}{uuid.uuid4().hex[:8]}"
    with schema_context(get_public_schema_name()), transaction.atomic():
        tenant = tenant_provision(
            name=name,
            subdomain=subdomain,
            schema_name=schema_name_for(subdomain),
            status=Tenant.Status.ACTIVE,
        )
        subscription_start(tenant=tenant, plan=Plan.objects.get(slug="free"))
        owner = User.objects.create_user(f"owner@{subdomain}.test")
        member = User.objects.create_user(f"member@{subdomain}.test")
        Membership.objects.create(user=owner, tenant=tenant, role=Membership.Role.OWNER)
        Membership.objects.create(user=member, tenant=tenant, role=Membership.Role.MEMBER)
        owner_token, member_token = Token.objects.create(user=owner), Token.objects.create(user=member)
    return World(tenant, owner, member, owner_token.key, member_token.key)


def fresh_world(name: str) -> World:
    """A committed tenant with an owner and a member who can log in with PASSWORD."""
    world = world_create(name)
    for user in (world.owner, world.member):
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    return world


def unit_vectors(count: int, *, seed: int = 0, dimensions: int = DIMENSIONS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dimensions)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def near(vector: list[float] | np.ndarray, count: int, *, spread: float, seed: int = 0) -> np.ndarray:
    """``count`` unit vectors scattered around ``vector``; a larger ``spread`` scatters them further."""
    rng = np.random.default_rng(seed)
    centre = np.asarray(vector, dtype=np.float32)
    noisy = centre + spread * rng.standard_normal((count, centre.size)).astype(np.float32) / np.sqrt(centre.size)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def chunks_insert(document: Document, vectors: np.ndarray, *, model: str = "test/random") -> list[Chunk]:
    """Store one chunk per vector for ``document`` (in the current schema), as ingestion would."""
    chunks = Chunk.objects.bulk_create(
        (
            Chunk(
                document=document,
                collection_id=document.collection_id,
                position=i,
                text=f"{document.title} part {i}",
                embedding=v.tolist(),
                embedding_model=model,
            )
            for i, v in enumerate(vectors)
        ),
        batch_size=1000,
    )
    Document.objects.filter(pk=document.pk).update(chunk_count=len(chunks), status=Document.Status.READY)
    return chunks


def ids_align(*tenants: Tenant, tables: tuple[str, ...] = ("ai_document", "ai_chunk")) -> None:
    """Make the next ids of ``tables`` equal in every tenant's schema, so one id names a row in each."""
    for table in tables:
        drawn = []
        for tenant in tenants:
            with tenant_context(tenant), connection.cursor() as cursor:
                cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", [table])
                drawn.append(cursor.fetchone()[0])
        for tenant in tenants:
            with tenant_context(tenant), connection.cursor() as cursor:
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, max(drawn)])


def owner_reader(tenant: Tenant) -> Reader:
    """The tenant's owner as the reader: documents a test stores land in the default collection."""
    owner = Membership.objects.filter(tenant=tenant, role=Membership.Role.OWNER).select_related("user").first()
    assert owner is not None, f"{tenant} has no owner"
    return reader_of(tenant=tenant, user=owner.user)
