"""Provisioning by cloning the template: each new tenant gets vector(384) and its own HNSW index, used by search."""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from django_tenants.utils import tenant_context

from ai.models import PromptTemplate
from ai.selectors import chunks_nearest, chunks_nearest_plan
from config.signup import tenant_signup
from tenants.services import template_is_current
from tests.ai.factories import DocumentFactory, chunks_insert, near, unit_vectors
from tests.conftest import host_client
from tests.factories import PASSWORD


@pytest.fixture
def fresh_tenant(db, unique_subdomain):  # noqa: ANN001
    """A tenant cloned from the template in this test, as a signup makes one."""
    return tenant_signup(
        organisation="Fresh",
        subdomain=unique_subdomain,
        email=f"owner@{unique_subdomain}.test",
        password=PASSWORD,
        plan="free",
    )


def column_type(schema: str, table: str, column: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT format_type(a.atttypid, a.atttypmod)
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s
            """,
            [schema, table, column],
        )
        return cursor.fetchone()[0]


def index_definition(schema: str, name: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s", [schema, name])
        row = cursor.fetchone()
    return row[0] if row else None


def test_a_new_tenant_has_a_384_dimension_embedding_column(fresh_tenant):
    assert column_type(fresh_tenant.tenant.schema_name, "ai_chunk", "embedding") == "vector(384)"


def test_a_new_tenant_has_its_own_cosine_hnsw_index(fresh_tenant):
    schema = fresh_tenant.tenant.schema_name

    assert index_definition(schema, "chunk_embedding_hnsw") == (
        f"CREATE INDEX chunk_embedding_hnsw ON {schema}.ai_chunk USING hnsw (embedding vector_cosine_ops) "
        "WITH (m='16', ef_construction='64')"
    )


def test_the_template_schema_is_current_and_keeps_its_hnsw_index(db):
    assert template_is_current()
    assert index_definition(settings.TENANT_BASE_SCHEMA, "chunk_embedding_hnsw") == (
        f"CREATE INDEX chunk_embedding_hnsw ON {settings.TENANT_BASE_SCHEMA}.ai_chunk USING hnsw "
        "(embedding vector_cosine_ops) WITH (m='16', ef_construction='64')"
    )


def test_a_new_tenant_starts_with_the_default_prompt_templates(fresh_tenant):
    with tenant_context(fresh_tenant.tenant):
        active = set(PromptTemplate.objects.filter(active=True).values_list("name", flat=True))

    assert active == {"summarise", "summarise_reduce", "chat"}


def test_search_on_a_new_tenant_runs_through_its_hnsw_index(fresh_tenant, settings):
    # pgvector costs an index scan by ef_search: on only 4,000 rows the planner rightly prefers a
    # seq scan at the default of 120 (the 100,000-chunk benchmark uses the index). A smaller
    # ef_search keeps this test's table small and still proves the clone's index is usable.
    settings.HNSW_EF_SEARCH = 40
    query = unit_vectors(1, seed=8)[0].tolist()
    # Random background plus a clear neighbourhood of the query: with only random vectors (the
    # hardest case for HNSW) a small ef_search misses true neighbours now and then, and the
    # graph is built with random levels, so the overlap check below was flaky.
    vectors = np.concatenate([unit_vectors(3990, seed=7), near(query, 10, spread=0.5, seed=9)])
    with tenant_context(fresh_tenant.tenant):
        chunks_insert(DocumentFactory(title="Random"), vectors)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE ai_chunk")

        plan = chunks_nearest_plan(vector=query, k=5)
        exact_plan = chunks_nearest_plan(vector=query, k=5, exact=True)
        approximate = [chunk.id for chunk in chunks_nearest(vector=query, k=5)]
        exact = [chunk.id for chunk in chunks_nearest(vector=query, k=5, exact=True)]

    assert "Index Scan using chunk_embedding_hnsw on ai_chunk" in plan, plan
    assert "Order By: (embedding <=> " in plan
    assert "chunk_embedding_hnsw" not in exact_plan, exact_plan
    assert "Seq Scan on ai_chunk" in exact_plan
    assert len(set(approximate) & set(exact)) >= 4


def test_a_new_tenant_can_upload_and_search_right_after_signup(public_client, unique_subdomain, ingest):
    signup = public_client.post(
        "/api/signup/",
        {
            "organisation": "Newco",
            "subdomain": unique_subdomain,
            "email": f"a@{unique_subdomain}.test",
            "password": PASSWORD,
            "plan": "free",
        },
        format="json",
    ).json()
    client = host_client(f"{unique_subdomain}.localhost", signup["token"])

    with ingest():
        client.post(
            "/api/documents/",
            {"title": "Onboarding", "content": "New starters get a laptop on day one."},
            format="json",
        )
    results = client.post("/api/search/", {"query": "equipment for new employees"}, format="json").json()["results"]

    assert [r["title"] for r in results] == ["Onboarding"]
