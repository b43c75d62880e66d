"""The two hot-path reads kept as plain SQL, against their ORM form: 1,000 runs each, interleaved,
on the test database (statement built, run and read). A statement goes back to the ORM when the
difference is at most ORM_THRESHOLD_MS."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import FilteredRelation, Q
from django_tenants.utils import tenant_context
from pgvector.django import CosineDistance

from ai.models import Chunk, Document
from ai.selectors import _search_settings, _search_sql
from billing.models import Plan, Subscription
from billing.services.quota import _plan_and_usage_sql
from billing.services.usage import period_start
from tests.benchmarks.conftest import print_table, summary
from tests.billing.conftest import record_usage

RUNS = 1000
CHUNKS = 2000
K = 8
ORM_THRESHOLD_MS = 0.5


def _race(raw: Callable[[], object], orm: Callable[[], object]) -> tuple[list[float], list[float]]:
    assert raw() == orm(), "the two forms must read the same"
    raw_ms, orm_ms = [], []
    for i in range(RUNS + 50):  # the first 50 warm both up
        for fn, times in ((raw, raw_ms), (orm, orm_ms)) if i % 2 else ((orm, orm_ms), (raw, raw_ms)):
            started = time.perf_counter()
            fn()
            if i >= 50:
                times.append((time.perf_counter() - started) * 1000)
    return raw_ms, orm_ms


def _report(title: str, raw_ms: list[float], orm_ms: list[float]) -> float:
    raw_p50, orm_p50 = summary(raw_ms)[0], summary(orm_ms)[0]
    print_table(
        f"{title}: {RUNS} runs each (ms)",
        ["form", "p50", "p95", "mean"],
        [["raw SQL", *summary(raw_ms)], ["ORM", *summary(orm_ms)], ["ORM - raw (p50)", orm_p50 - raw_p50, "", ""]],
    )
    return orm_p50 - raw_p50


@pytest.mark.benchmark
def test_quota_statement_raw_sql_against_the_orm(acme):
    record_usage(acme.tenant, tokens=10)
    tenant_id = acme.tenant.pk
    columns = ("plan_id", "plan__name", "plan__included_tokens", "plan__hard_limit", "plan__allowed_models")
    columns += ("plan__concurrent_requests", "period__tokens_used", "period__reserved_tokens")
    columns += ("period__overage_notified_at",)

    def raw() -> object:
        with connection.cursor() as cursor:
            cursor.execute(_plan_and_usage_sql(), [period_start(), tenant_id])
            row = list(cursor.fetchone())
        row[4] = json.loads(row[4]) if isinstance(row[4], str) else row[4]  # as quota_check reads it
        return tuple(row)

    def orm() -> object:
        start = period_start()
        return (
            Subscription.objects.for_tenant(tenant_id)
            .annotate(
                period=FilteredRelation("tenant__usage_periods", condition=Q(tenant__usage_periods__period_start=start))
            )
            .values_list(*columns)
            .first()
        )

    with tenant_context(acme.tenant):
        difference = _report("quota: plan joined to the period's total", *_race(raw, orm))
    print(f"quota: ORM costs {difference:+.3f} ms a check")
    assert Plan.objects.exists()


@pytest.mark.benchmark
def test_knn_statement_raw_sql_against_the_orm(acme):
    rng = np.random.default_rng(7)
    with tenant_context(acme.tenant):
        document = Document.objects.create(title="Vectors", content="x", status=Document.Status.READY)
        vectors = rng.standard_normal((CHUNKS, settings.EMBEDDING_DIMENSIONS)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        Chunk.objects.bulk_create(
            Chunk(
                document=document,
                collection_id=document.collection_id,
                position=i,
                text=f"chunk {i}",
                embedding=vector.tolist(),
            )
            for i, vector in enumerate(vectors)
        )
        query = rng.standard_normal(settings.EMBEDDING_DIMENSIONS)
        query = (query / np.linalg.norm(query)).tolist()

        def raw() -> object:
            sql, params = _search_sql(query, k=K, document_ids=None)
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return [row[:4] for row in cursor.fetchall()]

        def orm() -> object:
            rows = (
                Chunk.objects.filter(embedding__isnull=False)
                .annotate(distance=CosineDistance("embedding", query))
                .order_by("distance")
                .values_list("id", "document_id", "document__title", "text", "distance")[:K]
            )
            return [row[:4] for row in rows]

        with _search_settings(k=K, exact=False):
            difference = _report(f"kNN: {K} nearest of {CHUNKS} chunks (HNSW)", *_race(raw, orm))
    print(f"kNN: ORM costs {difference:+.3f} ms a search")
