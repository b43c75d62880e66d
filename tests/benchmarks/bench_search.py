"""Search on 100,000 chunks in one tenant: HNSW vs exact scan latency, recall@10, and the index build time;
and permission-filtered search (100,000 chunks in 50 collections, the asker may read 5) against unfiltered
search in the same run, at the same recall."""

from __future__ import annotations

import re
import struct
import time
from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from ai.access import documents_readable, reader_of
from ai.models import Chunk, Collection, CollectionMember, Document
from ai.selectors import chunks_nearest, chunks_nearest_plan
from tests.benchmarks.conftest import print_table, summary

CHUNKS = 100_000
CHUNKS_PER_DOCUMENT = 100
DIMENSIONS = 384
CLUSTERS = 100
QUERIES = 100
K = 10
EF_SEARCH_VALUES = (40, 80, 120, 200)
GOAL_P50_MS = 10.0
GOAL_RECALL = 0.95


def synthetic_vectors(count: int, rng: np.random.Generator, centroids: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Unit vectors shaped like sentence embeddings: topic clusters, spread along a few shared directions
    (real embeddings have a low intrinsic dimension), with a little noise in every direction."""
    topic = centroids[rng.integers(0, len(centroids), count)]
    along = rng.standard_normal((count, basis.shape[0])).astype(np.float32) @ basis
    noise = rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
    # Spreads chosen so a query's nearest chunks sit at cosine ~0.6, as MiniLM's do for related passages.
    vectors = topic + 0.6 * along / np.sqrt(basis.shape[0]) + 0.8 * noise / np.sqrt(DIMENSIONS)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def copy_chunks(schema: str, documents: list[Document], vectors: np.ndarray, *, first_position: int = 0) -> None:
    """Bulk-load chunks with one binary COPY per 10,000 rows, the rows built by numpy in one go."""
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("document_len", ">i4"),
            ("document_id", ">i8"),
            ("collection_len", ">i4"),
            ("collection_id", ">i8"),
            ("position_len", ">i4"),
            ("position", ">i4"),
            ("text_len", ">i4"),
            ("text", "S12"),
            ("tokens_len", ">i4"),
            ("tokens", ">i4"),
            ("vector_len", ">i4"),
            ("dimensions", ">i2"),
            ("unused", ">i2"),
            ("vector", ">f4", (DIMENSIONS,)),
            ("model_len", ">i4"),
            ("model", "S12"),
        ]
    )
    rows = np.zeros(len(vectors), dtype=row)
    rows["fields"] = 7
    rows["document_len"], rows["collection_len"], rows["position_len"], rows["text_len"], rows["tokens_len"] = (
        8,
        8,
        4,
        12,
        4,
    )
    rows["vector_len"], rows["dimensions"], rows["model_len"] = 4 + 4 * DIMENSIONS, DIMENSIONS, 12
    index = np.arange(len(vectors))
    rows["document_id"] = np.asarray([d.id for d in documents])[index // CHUNKS_PER_DOCUMENT]
    rows["collection_id"] = np.asarray([d.collection_id for d in documents])[index // CHUNKS_PER_DOCUMENT]
    rows["position"] = first_position + index % CHUNKS_PER_DOCUMENT
    rows["text"] = [f"chunk {i:06d}".encode() for i in index]
    rows["tokens"] = 12
    rows["vector"] = vectors
    rows["model"] = b"bench/random"
    header = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    sql = (
        f'COPY "{schema}".ai_chunk (document_id, collection_id, position, text, token_count, embedding, '
        "embedding_model) FROM STDIN WITH (FORMAT BINARY)"
    )
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        for start in range(0, len(rows), 10_000):
            with cursor.copy(sql) as copy:
                copy.write(header + rows[start : start + 10_000].tobytes() + struct.pack(">h", -1))


def index_build(index: object) -> None:
    with connection.schema_editor(atomic=False) as editor:
        editor.add_index(Chunk, index)


def timed(call) -> tuple[float, object]:  # noqa: ANN001
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def execution_ms(plan: str) -> float:
    return float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))


@pytest.mark.benchmark
def test_hnsw_search_on_100k_chunks_is_fast_and_accurate(acme, settings):
    rng = np.random.default_rng(2024)
    centroids = rng.standard_normal((CLUSTERS, DIMENSIONS)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    basis = rng.standard_normal((24, DIMENSIONS)).astype(np.float32) / np.sqrt(DIMENSIONS)
    vectors = synthetic_vectors(CHUNKS, rng, centroids, basis)
    queries = synthetic_vectors(QUERIES, rng, centroids, basis)
    index = next(index for index in Chunk._meta.indexes if index.name == "chunk_embedding_hnsw")
    configured_ef_search = settings.HNSW_EF_SEARCH
    schema = acme.tenant.schema_name
    setup_rows = []

    with tenant_context(acme.tenant):
        documents = Document.objects.bulk_create(
            Document(title=f"Document {n}", content="synthetic", status="ready", chunk_count=CHUNKS_PER_DOCUMENT)
            for n in range(CHUNKS // CHUNKS_PER_DOCUMENT)
        )
        with connection.schema_editor(atomic=False) as editor:
            editor.remove_index(Chunk, index)
        load_ms, _ = timed(lambda: copy_chunks(schema, documents, vectors))
        setup_rows.append([f"COPY {CHUNKS:,} chunks (binary)", load_ms / 1000, CHUNKS / (load_ms / 1000)])
        with connection.cursor() as cursor:
            # Django's foreign keys are deferred; run their checks now, or CREATE INDEX refuses.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
            cursor.execute("SET LOCAL max_parallel_maintenance_workers = 1")  # leader + 1 worker on 2 cores
        build_ms, _ = timed(lambda: index_build(index))
        setup_rows.append(["build HNSW index (m=16, ef_construction=64)", build_ms / 1000, CHUNKS / (build_ms / 1000)])
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE ai_chunk")
            cursor.execute("SELECT pg_relation_size('ai_chunk'), pg_relation_size('chunk_embedding_hnsw')")
            table_bytes, index_bytes = cursor.fetchone()
        assert Chunk.objects.count() == CHUNKS

        similarity = np.sort(queries[:20] @ vectors.T, axis=1)
        data_row = [
            "cosine of a query's 1st / 10th neighbour, median chunk: "
            f"{similarity[:, -1].mean():.2f} / {similarity[:, -10].mean():.2f} / {np.median(similarity):.2f}",
            0.0,
            0.0,
        ]
        plan = chunks_nearest_plan(vector=queries[0].tolist(), k=K)
        assert "Index Scan using chunk_embedding_hnsw" in plan, plan

        exact_ms, exact_ids = [], []
        for query in queries:
            elapsed, chunks = timed(lambda q=query: chunks_nearest(vector=q.tolist(), k=K, exact=True))
            exact_ms.append(elapsed)
            exact_ids.append({chunk.id for chunk in chunks})

        rows = []
        results = {}
        for ef_search in EF_SEARCH_VALUES:
            settings.HNSW_EF_SEARCH = ef_search
            for query in queries[:10]:  # warm the index pages into the cache
                chunks_nearest(vector=query.tolist(), k=K)
            latencies, recalls, sql_ms = [], [], []
            for query, exact in zip(queries, exact_ids, strict=True):
                elapsed, chunks = timed(lambda q=query: chunks_nearest(vector=q.tolist(), k=K))
                latencies.append(elapsed)
                recalls.append(len({chunk.id for chunk in chunks} & exact) / K)
            for query in queries[:30]:
                sql_ms.append(execution_ms(chunks_nearest_plan(vector=query.tolist(), k=K, analyze=True)))
            p50, p95, mean = summary(latencies)
            recall = float(np.mean(recalls))
            results[ef_search] = (p50, recall)
            rows.append([f"HNSW ef_search={ef_search}", p50, p95, mean, summary(sql_ms)[0], f"{recall:.3f}"])
        p50, p95, mean = summary(exact_ms)
        rows.append(["exact scan (enable_indexscan=off)", p50, p95, mean, float("nan"), "1.000"])

        extra = synthetic_vectors(5_000, rng, centroids, basis)
        insert_ms, _ = timed(lambda: copy_chunks(schema, documents[:50], extra, first_position=CHUNKS_PER_DOCUMENT))
        setup_rows.append(
            ["COPY 5,000 more chunks into the indexed table", insert_ms / 1000, 5_000 / (insert_ms / 1000)]
        )

    print_table(
        f"Loading {CHUNKS:,} chunks of {DIMENSIONS} dimensions ({CLUSTERS} topic clusters) into one tenant",
        ["step", "seconds", "rows/s"],
        setup_rows
        + [[f"table {table_bytes / 2**20:.0f} MiB, HNSW index {index_bytes / 2**20:.0f} MiB", 0.0, 0.0], data_row],
    )
    print_table(
        f"Search latency over {QUERIES} queries, k={K} "
        "(ms; chunks_nearest wall time, and SQL execution p50 from EXPLAIN ANALYZE)",
        ["method", "p50", "p95", "mean", "SQL p50", "recall@10"],
        rows,
    )
    chosen = min((ef for ef, (p50, recall) in results.items() if recall >= GOAL_RECALL), default=None)
    print(f"\nsmallest ef_search with recall@10 >= {GOAL_RECALL}: {chosen} (HNSW_EF_SEARCH is {configured_ef_search})")
    assert chosen is not None, results
    assert results[chosen][0] < GOAL_P50_MS, results


COLLECTIONS = 50
READABLE_COLLECTIONS = 5
FILTERED_GOAL_RATIO = 1.3


def _loaded_in_collections(world, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """100,000 chunks in 1,000 documents spread round-robin over 50 ``members`` collections (every
    topic in every collection); the world's member is named in 5 of them. Returns the chunk vectors
    and the query vectors."""
    centroids = rng.standard_normal((CLUSTERS, DIMENSIONS)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    basis = rng.standard_normal((24, DIMENSIONS)).astype(np.float32) / np.sqrt(DIMENSIONS)
    vectors = synthetic_vectors(CHUNKS, rng, centroids, basis)
    queries = synthetic_vectors(QUERIES, rng, centroids, basis)
    index = next(index for index in Chunk._meta.indexes if index.name == "chunk_embedding_hnsw")
    collections = Collection.objects.bulk_create(
        Collection(name=f"Collection {n}", visibility=Collection.Visibility.MEMBERS) for n in range(COLLECTIONS)
    )
    CollectionMember.objects.bulk_create(
        CollectionMember(collection=collection, user=world.member) for collection in collections[:READABLE_COLLECTIONS]
    )
    documents = Document.objects.bulk_create(
        Document(
            title=f"Document {n}",
            content="synthetic",
            status="ready",
            chunk_count=CHUNKS_PER_DOCUMENT,
            collection=collections[n % COLLECTIONS],
        )
        for n in range(CHUNKS // CHUNKS_PER_DOCUMENT)
    )
    with connection.schema_editor(atomic=False) as editor:
        editor.remove_index(Chunk, index)
    copy_chunks(world.tenant.schema_name, documents, vectors)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET LOCAL maintenance_work_mem = '1GB'")
        cursor.execute("SET LOCAL max_parallel_maintenance_workers = 1")
    index_build(index)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ai_chunk")
        cursor.execute("ANALYZE ai_document")
        cursor.execute("ANALYZE ai_collection")
    return vectors, queries


@pytest.mark.benchmark
def test_permission_filtered_search_against_unfiltered_at_the_same_recall(acme, settings):
    """Prints the tables and whether the goal (filtered p50 at most 1.3x unfiltered at the same
    recall) was met on this run; fails if a filtered search returns a passage its reader may not
    read, or if a mode never reaches the recall goal."""
    rng = np.random.default_rng(2026)
    configured_ef_search = settings.HNSW_EF_SEARCH
    modes = {
        "unfiltered (no reader)": None,
        f"filtered: member, {READABLE_COLLECTIONS} of {COLLECTIONS} collections": reader_of(
            tenant=acme.tenant, user=acme.member
        ),
        f"filtered: owner, all {COLLECTIONS}": reader_of(tenant=acme.tenant, user=acme.owner),
    }
    names = list(modes)
    with tenant_context(acme.tenant):
        _, queries = _loaded_in_collections(acme, rng)
        readable = set(documents_readable(modes[names[1]]).values_list("id", flat=True))
        assert len(readable) == CHUNKS // CHUNKS_PER_DOCUMENT * READABLE_COLLECTIONS // COLLECTIONS
        plan = chunks_nearest_plan(vector=queries[0].tolist(), k=K, reader=modes[names[1]])
        assert "Index Scan using chunk_embedding_hnsw" in plan, plan
        truth = {
            name: [{c.id for c in chunks_nearest(vector=q.tolist(), k=K, exact=True, reader=reader)} for q in queries]
            for name, reader in modes.items()
        }
        rows, results = [], {}
        for ef_search in EF_SEARCH_VALUES:
            settings.HNSW_EF_SEARCH = ef_search
            for reader in modes.values():
                for query in queries[:10]:  # warm the index pages into the cache
                    chunks_nearest(vector=query.tolist(), k=K, reader=reader)
            latencies: dict[str, list[float]] = {name: [] for name in names}
            recalls: dict[str, list[float]] = {name: [] for name in names}
            for i, query in enumerate(queries):
                # The modes take turns, in a rotating order, so a busy moment of the machine hits all alike.
                for name in names[i % 3 :] + names[: i % 3]:
                    elapsed, chunks = timed(
                        lambda q=query, r=modes[name]: chunks_nearest(vector=q.tolist(), k=K, reader=r)
                    )
                    latencies[name].append(elapsed)
                    found = {chunk.id for chunk in chunks}
                    recalls[name].append(len(found & truth[name][i]) / K)
                    if name == names[1]:  # never a passage the member may not read
                        assert {chunk.document_id for chunk in chunks} <= readable, name
            base = summary(latencies[names[0]])[0]
            for name in names:
                p50, p95, _ = summary(latencies[name])
                recall = float(np.mean(recalls[name]))
                results[(ef_search, name)] = (p50, recall)
                rows.append([f"ef_search={ef_search}", name, p50, p95, f"{recall:.3f}", p50 / base])

        settings.HNSW_EF_SEARCH = configured_ef_search
        settings.TENANT_RATE_LIMIT_PER_MINUTE = 0  # 300 turns in a few seconds: measured, not limited
        turn_rows = _turns_before_the_upstream(acme, modes, queries)
        with connection.cursor() as cursor:  # the index and rows fit in them, or candidates come from the OS
            cursor.execute("SHOW shared_buffers")
            shared_buffers = cursor.fetchone()[0]
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('ai_chunk'))")
            chunks_size = cursor.fetchone()[0]

    print_table(
        f"Permission-filtered vs unfiltered search: {CHUNKS:,} chunks in {COLLECTIONS} collections, "
        f"{QUERIES} queries, k={K}; the chunks' table and its indexes {chunks_size}, shared_buffers "
        f"{shared_buffers} (ms, chunks_nearest wall time; recall@{K} against the exact answer "
        f"for the same reader; at an ef_search other than the configured {configured_ef_search}, a search "
        "also sets it with SET LOCAL in a savepoint, three more round trips, and is planned each time)",
        ["ef_search", "search", "p50", "p95", f"recall@{K}", "p50 / unfiltered"],
        rows,
    )
    print_table(
        f"A chat turn up to the upstream call (first token = this + the model's own time to first token): "
        f"accepted, stored, passages found; ms over {QUERIES} turns, ef_search={configured_ef_search}",
        ["search", "p50", "p95", "p50 / unfiltered"],
        turn_rows,
    )
    # The same recall: each ef_search at which a filtered search's recall is within 0.01 of the
    # unfiltered one's (with iterative scans the filtered recall is as high or higher).
    for name in names:
        assert max(results[(ef, name)][1] for ef in EF_SEARCH_VALUES) >= GOAL_RECALL, (name, results)
    ratios = {
        name: {
            ef: round(results[(ef, name)][0] / results[(ef, names[0])][0], 2)
            for ef in EF_SEARCH_VALUES
            if abs(results[(ef, name)][1] - results[(ef, names[0])][1]) <= 0.01
        }
        for name in names[1:]
    }
    at_default = {name: ratio.get(configured_ef_search) for name, ratio in ratios.items()}
    met = all(ratio is not None and ratio <= FILTERED_GOAL_RATIO for ratio in at_default.values())
    verdict = "met" if met else "NOT met on this run"
    print(f"\np50 / unfiltered at the same recall, by ef_search: {ratios}")
    print(f"at the configured ef_search={configured_ef_search}: {at_default}; goal <= {FILTERED_GOAL_RATIO}x {verdict}")


def _turns_before_the_upstream(world, modes: dict[str, Any], queries: np.ndarray) -> list[list[object]]:  # noqa: ANN001
    """Each mode's chat turn from acceptance to the prompt with its passages (``_prepare`` with the
    question's vector ready, so it searches on its own connection, and the prompt built): what
    Strata adds before the first token. "Unfiltered" runs the same turn with the search's reader
    dropped, so the difference is the permission filter alone."""
    from ai.chat import services as chat

    users = {None: world.member}
    timings: dict[str, list[float]] = {name: [] for name in modes}
    search, embedding = chat.documents_search, chat.query_embedding
    try:
        for i, query in enumerate(queries):
            names = list(modes)
            for name in names[i % 3 :] + names[: i % 3]:
                reader = modes[name]
                user = world.owner if reader is not None and reader.user_id == world.owner.pk else users[None]
                chat.documents_search = search if reader is not None else _unfiltered(search)
                vector: Future[list[float]] = Future()
                vector.set_result(query.tolist())
                chat.query_embedding = lambda text, vector=vector: vector  # type: ignore[misc]
                started = time.perf_counter()
                turn = chat._prepare(tenant=world.tenant, user=user, message="A question", conversation_id=None)
                chat._prompt(turn.question, turn.hits or [])
                timings[name].append((time.perf_counter() - started) * 1000)
                turn.slot.release()
                assert turn.hits is not None  # searched inside the turn, on its connection
    finally:
        chat.documents_search, chat.query_embedding = search, embedding
    base = summary(timings[next(iter(modes))])[0]
    return [[name, *summary(values)[:2], summary(values)[0] / base] for name, values in timings.items()]


def _unfiltered(search):  # noqa: ANN001, ANN202
    def unfiltered(**kwargs):  # noqa: ANN003, ANN202
        return search(**{**kwargs, "reader": None})

    return unfiltered
