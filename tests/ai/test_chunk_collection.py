"""Each chunk carries its document's collection, where the permission-filtered search checks it:
the chunks follow their document whoever moves it (the API, deleting a collection, the tenant
admin), a new version's chunks carry it, and no chunk is ever filed under another collection."""

from __future__ import annotations

import importlib

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django_tenants.utils import tenant_context

from ai.access import reader_of
from ai.embedding.embedders import get_embedder
from ai.models import Chunk, Collection, Document
from ai.selectors import chunks_nearest
from tests.ai.factories import DocumentFactory, chunks_insert, near

pytestmark = pytest.mark.django_db

QUESTION = "How many days of leave do staff get?"
LEAVE = "Staff get twenty days of paid leave a year."


@pytest.fixture
def board(acme) -> int:  # noqa: ANN001
    """A collection the world's member may not read."""
    response = acme.client(acme.owner_token).post(
        "/api/collections/", {"name": "Board", "visibility": "members"}, format="json"
    )
    return response.json()["id"]


def _added(world, ingest, **payload: object) -> int:  # noqa: ANN001
    with ingest():
        response = world.client(world.owner_token).post(
            "/api/documents/", {"title": "Leave policy", "content": LEAVE, **payload}, format="json"
        )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def _found(world, token: str, **scope: object) -> set[int]:  # noqa: ANN001
    """The documents whose passages a search by ``token`` returns."""
    response = world.client(token).post(
        "/api/search/", {"query": QUESTION, "max_distance": 2.0, **scope}, format="json"
    )
    assert response.status_code == 200, response.json()
    return {hit["document_id"] for hit in response.json()["results"]}


def _collections_of_chunks(world, document_id: int) -> set[int]:  # noqa: ANN001
    with tenant_context(world.tenant):
        return set(Chunk.objects.filter(document_id=document_id).values_list("collection_id", flat=True))


def test_moving_a_document_changes_what_a_member_finds_at_once(acme, ingest, board):
    document = _added(acme, ingest)
    owner = acme.client(acme.owner_token)
    assert document in _found(acme, acme.member_token)

    closed = owner.patch(f"/api/documents/{document}/", {"collection_id": board}, format="json")

    assert closed.status_code == 200 and _collections_of_chunks(acme, document) == {board}
    assert document not in _found(acme, acme.member_token)
    assert document in _found(acme, acme.owner_token, collection_ids=[board])

    with tenant_context(acme.tenant):
        default = Collection.objects.get(is_default=True).id
    reopened = owner.patch(f"/api/documents/{document}/", {"collection_id": default}, format="json")

    assert reopened.status_code == 200 and _collections_of_chunks(acme, document) == {default}
    assert document in _found(acme, acme.member_token)
    assert document not in _found(acme, acme.owner_token, collection_ids=[board])


def test_deleting_a_collection_moves_its_chunks_with_its_documents(acme, ingest, board):
    document = _added(acme, ingest, collection_id=board)
    with tenant_context(acme.tenant):
        default = Collection.objects.get(is_default=True).id
    assert document not in _found(acme, acme.member_token)

    deleted = acme.client(acme.owner_token).delete(f"/api/collections/{board}/?move_to={default}")

    assert deleted.status_code == 204 and _collections_of_chunks(acme, document) == {default}
    assert document in _found(acme, acme.member_token)


def test_the_tenant_admin_moving_a_document_moves_its_chunks(acme, ingest, board):
    document = _added(acme, ingest)
    with tenant_context(acme.tenant):
        row = Document.objects.get(id=document)

    saved = acme.session_client(acme.owner).post(
        f"/admin/ai/document/{document}/change/",
        {
            "collection": board,
            "title": row.title,
            "content": row.content,
            "revision": row.revision,
            "version": row.version,
        },
    )

    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert _collections_of_chunks(acme, document) == {board}
    assert document not in _found(acme, acme.member_token)


def test_a_new_versions_chunks_carry_the_documents_collection(acme, ingest, board):
    document = _added(acme, ingest, collection_id=board)
    owner = acme.client(acme.owner_token)

    with ingest():
        replaced = owner.post(
            f"/api/documents/{document}/replace/",
            {"content": "Staff get thirty days of paid leave a year.\n\n" + "More about leave. " * 400},
            format="json",
        )

    assert replaced.status_code == 202 and replaced.json()["version"] == 2
    with tenant_context(acme.tenant):
        assert Document.objects.get(id=document).chunk_count > 1
    assert _collections_of_chunks(acme, document) == {board}
    assert document not in _found(acme, acme.member_token)
    assert document in _found(acme, acme.owner_token)


def test_a_member_never_gets_a_passage_of_a_document_moved_out_of_their_reach(acme, board):
    """The moved document's 300 chunks are the nearest to the question; after the move the member's
    search still returns k passages, none of them its."""
    vector = get_embedder().embed_query(QUESTION)
    member = reader_of(tenant=acme.tenant, user=acme.member)
    with tenant_context(acme.tenant):
        crowd = DocumentFactory(title="Crowd")
        elsewhere = DocumentFactory(title="Elsewhere")
        chunks_insert(crowd, near(vector, 300, spread=0.3, seed=1))
        chunks_insert(elsewhere, near([-x for x in vector], 100, spread=0.3, seed=2))
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE ai_chunk")
        assert {c.document_id for c in chunks_nearest(vector=vector, k=12, reader=member)} == {crowd.id}

        Document.objects.filter(id=crowd.id).update(collection_id=board)

        found = chunks_nearest(vector=vector, k=12, reader=member)
        narrowed = chunks_nearest(vector=vector, k=12, reader=member.narrowed(collection_ids=[board]))
    assert len(found) == 12 and {c.document_id for c in found} == {elsewhere.id}
    assert narrowed == []


def test_a_chunk_filed_under_another_collection_than_its_documents_is_refused(acme, board):
    with tenant_context(acme.tenant):
        document = DocumentFactory(title="Filed")
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            Chunk.objects.create(document=document, collection_id=board, position=0, text="misfiled")
            cursor.execute("SET CONSTRAINTS chunk_document_collection_fk IMMEDIATE")  # deferred, as Django's


def test_the_migration_fills_each_chunks_collection_from_its_document(acme, board):
    backfill = importlib.import_module("ai.migrations.0015_chunk_collection").BACKFILL
    with tenant_context(acme.tenant):
        document = DocumentFactory(title="Before", collection_id=board)
        chunks_insert(document, near([1.0] + [0.0] * (settings.EMBEDDING_DIMENSIONS - 1), 3, spread=0.1))
        with connection.cursor() as cursor:  # as the rows stood before the migration: no collection
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # no ALTER TABLE while checks are pending
            cursor.execute("ALTER TABLE ai_chunk DROP CONSTRAINT chunk_document_collection_fk")
            cursor.execute("ALTER TABLE ai_chunk ALTER COLUMN collection_id DROP NOT NULL")
            cursor.execute("UPDATE ai_chunk SET collection_id = NULL")

            cursor.execute(backfill)

        assert _collections_of_chunks(acme, document.id) == {board}
