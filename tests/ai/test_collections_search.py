"""The permission filter is part of the kNN statement: the HNSW index is scanned, the readable
collections are checked as candidates come, and the iterative scan still returns k rows when the
nearest chunks are all in collections the asker may not read."""

from __future__ import annotations

import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from ai.access import reader_of
from ai.embedding.embedders import get_embedder
from ai.models import Collection
from ai.selectors import chunks_nearest, chunks_nearest_plan
from tests.ai.factories import DocumentFactory, chunks_insert, near

pytestmark = pytest.mark.django_db

QUESTION = "quarterly revenue of the northern region"


@pytest.fixture
def crowded(acme):  # noqa: ANN001, ANN201
    """500 chunks right next to the question in a closed collection; 300 far away in the open one."""
    vector = get_embedder().embed_query(QUESTION)
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        closed = Collection.objects.create(name="Closed", visibility=Collection.Visibility.MEMBERS)
        crowd = DocumentFactory(title="Crowd", collection=closed)
        wanted = DocumentFactory(title="Wanted")
        chunks_insert(crowd, near(vector, 500, spread=0.3, seed=1))
        chunks_insert(wanted, near([-x for x in vector], 300, spread=0.3, seed=2))
        cursor.execute("ANALYZE ai_chunk")
        cursor.execute("ANALYZE ai_document")
    return vector, crowd, wanted


def test_the_filter_runs_inside_the_index_scan_query(acme, crowded):
    vector, _, _ = crowded
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_sort = off")  # the index path that large tables take
        plan = chunks_nearest_plan(vector=vector, k=12, reader=reader_of(tenant=acme.tenant, user=acme.member))

    assert "Index Scan using chunk_embedding_hnsw" in plan, plan
    assert "InitPlan" in plan and "ANY" in plan, plan  # the readable collections, computed once


def test_a_member_still_gets_k_readable_rows_when_the_nearest_are_closed_to_them(acme, crowded):
    vector, crowd, wanted = crowded
    with tenant_context(acme.tenant):
        member = chunks_nearest(vector=vector, k=12, reader=reader_of(tenant=acme.tenant, user=acme.member))
        owner = chunks_nearest(vector=vector, k=12, reader=reader_of(tenant=acme.tenant, user=acme.owner))

    assert len(member) == 12 and {c.document_id for c in member} == {wanted.id}
    assert {c.document_id for c in owner} == {crowd.id}  # owners read every collection


def test_nobody_without_a_membership_or_key_reads_anything(acme, globex, crowded):
    vector, _, _ = crowded
    with tenant_context(acme.tenant):
        stranger = chunks_nearest(vector=vector, k=12, reader=reader_of(tenant=acme.tenant, user=globex.owner))

    assert stranger == []
