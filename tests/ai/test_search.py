"""Semantic search through the API: the right document first, k, max_distance, filters, validation, tenancy."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from ai.embedding.embedders import get_embedder
from ai.models import Chunk, Document
from ai.selectors import chunks_nearest, chunks_nearest_plan, relevance_score
from tests.ai.factories import DocumentFactory, chunks_insert, ids_align, near

# Ten short documents on different topics; each question avoids its document's words.
CORPUS = {
    "Sourdough at home": (
        "Feed the starter with flour and water the night before. Mix the dough, let it rise slowly for "
        "twelve hours, shape the loaf and bake it in a very hot cast-iron pot until the crust is dark and crackly."
    ),
    "Preparing for a marathon": (
        "Build weekly mileage gradually, include one slow long run every week and taper for the final "
        "fortnight so the legs are fresh when the 42-kilometre race starts."
    ),
    "Photosynthesis": (
        "Chlorophyll in leaves captures sunlight and turns carbon dioxide and water into sugar, releasing "
        "oxygen as a by-product."
    ),
    "Why central banks raise rates": (
        "When the central bank lifts its policy rate, mortgages and business credit cost more, spending "
        "slows and inflation comes down."
    ),
    "Puppy obedience": (
        "Reward the puppy with a treat the moment it sits on command; short daily sessions and consistency "
        "beat punishment."
    ),
    "Volcanic eruptions": (
        "Magma forces its way up through cracks in the crust and bursts out as lava, ash and gas, burying "
        "nearby villages and cooling the climate for a year."
    ),
    "Account security": (
        "Use a long, unique passphrase for every account, keep it in a password manager and turn on "
        "two-factor authentication to stop attackers who steal credentials."
    ),
    "French press coffee": (
        "Grind the beans just before brewing, pour water slightly below boiling and let the grounds steep "
        "for four minutes before pushing the plunger down."
    ),
    "Rovers on Mars": (
        "Perseverance drives across the dusty red surface of the fourth planet, drilling rock samples that "
        "may hold signs of ancient microbial life."
    ),
    "Parental leave policy": (
        "New parents are entitled to up to twelve weeks of paid leave after a birth or adoption, and the "
        "company may not dismiss anyone for taking it."
    ),
}

QUESTIONS = {
    "How do I make naturally leavened bread in my kitchen?": "Sourdough at home",
    "What schedule gets a jogger ready for a long road event?": "Preparing for a marathon",
    "How does greenery produce food from light?": "Photosynthesis",
    "Why would the monetary authority make borrowing pricier to fight rising prices?": "Why central banks raise rates",
    "What is the best way to teach a young dog to behave?": "Puppy obedience",
    "What happens when a mountain explodes with molten rock?": "Volcanic eruptions",
    "How can I keep hackers out of my online logins?": "Account security",
    "How should I prepare a good cup of java?": "French press coffee",
    "Are robots searching for fossils of bacteria on another world?": "Rovers on Mars",
    "Can I take time off work when my baby is born?": "Parental leave policy",
}


@pytest.fixture
def corpus(acme, ingest) -> dict[str, int]:  # noqa: ANN001
    """The ten documents, uploaded and ingested through the API; title -> id."""
    client = acme.client(acme.member_token)
    ids = {}
    with ingest():
        for title, content in CORPUS.items():
            response = client.post("/api/documents/", {"title": title, "content": content}, format="json")
            assert response.status_code == 201, response.content
            ids[title] = response.json()["id"]
    return ids


def search(world, token: str | None = None, **payload: object):  # noqa: ANN001, ANN201
    return world.client(token or world.member_token).post("/api/search/", payload, format="json")


def test_questions_find_the_right_document_first(acme, corpus):
    for question, title in QUESTIONS.items():
        results = search(acme, query=question, k=3).json()["results"]

        assert results[0]["title"] == title, (question, [r["title"] for r in results])
        assert results[0]["document_id"] == corpus[title]
        assert results[0]["text"] == CORPUS[title]


def test_results_have_the_documented_shape_and_are_ordered_by_distance(acme, corpus):
    response = search(acme, query="What should I feed a hungry dog?", k=4, max_distance=2.0)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == 4
    assert all(set(r) == {"document_id", "title", "chunk_id", "text", "distance", "relevance"} for r in results)
    distances = [r["distance"] for r in results]
    assert distances == sorted(distances)
    assert all(0.0 <= d <= 2.0 for d in distances)
    assert len({r["chunk_id"] for r in results}) == 4
    with tenant_context(acme.tenant):
        for r in results:
            assert Chunk.objects.get(id=r["chunk_id"]).document_id == r["document_id"]


def test_k_defaults_to_five_and_caps_the_result_count(acme, corpus):
    assert len(search(acme, query="money", max_distance=2.0).json()["results"]) == 5
    assert len(search(acme, query="money", k=1, max_distance=2.0).json()["results"]) == 1
    assert len(search(acme, query="money", k=50, max_distance=2.0).json()["results"]) == len(CORPUS)


def test_max_distance_drops_results_further_than_it(acme, corpus):
    everything = search(acme, query="baking bread", k=10, max_distance=2.0).json()["results"]
    cutoff = (everything[0]["distance"] + everything[1]["distance"]) / 2

    close = search(acme, query="baking bread", k=10, max_distance=cutoff).json()["results"]

    assert [r["title"] for r in close] == ["Sourdough at home"]
    assert search(acme, query="baking bread", k=10, max_distance=0.0).json()["results"] == []
    assert len(search(acme, query="baking bread", k=10, max_distance=2.0).json()["results"]) == len(CORPUS)


def test_document_ids_restrict_the_search_to_those_documents(acme, corpus):
    chosen = [corpus["Rovers on Mars"], corpus["Account security"]]

    response = search(
        acme, query="How does greenery produce food from light?", k=5, max_distance=2.0, document_ids=chosen
    )

    results = response.json()["results"]

    assert len(results) == 2
    assert {r["document_id"] for r in results} == set(chosen)


def test_a_filtered_search_still_returns_k_rows_when_the_nearest_chunks_are_filtered_out(acme, corpus):
    # Hundreds of chunks sit right next to the question, in a document that is filtered out; the
    # wanted document's chunks are all far away. An HNSW scan that stopped after its first
    # hnsw.ef_search candidates would find none of them; an iterative scan keeps going.
    question = "quarterly revenue of the northern region"
    vector = get_embedder().embed_query(question)
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        crowd = DocumentFactory(title="Crowd")
        wanted = DocumentFactory(title="Wanted")
        chunks_insert(crowd, near(vector, 500, spread=0.3, seed=1))
        chunks_insert(wanted, near([-x for x in vector], 2500, spread=0.3, seed=2))
        cursor.execute("ANALYZE ai_chunk")
        # At this size the planner may also sort the document's rows instead (exact, so trivially
        # right); rule that out to test the index path that large tables take.
        cursor.execute("SET LOCAL enable_sort = off")
        plan = chunks_nearest_plan(vector=vector, k=12, document_ids=[wanted.id])
    assert "Index Scan using chunk_embedding_hnsw" in plan, plan

    results = search(acme, query=question, k=12, max_distance=2.0, document_ids=[wanted.id]).json()["results"]

    assert len(results) == 12
    assert {r["document_id"] for r in results} == {wanted.id}
    unfiltered = search(acme, query=question, k=12, max_distance=2.0).json()["results"]
    assert {r["document_id"] for r in unfiltered} == {crowd.id}


def test_documents_without_embeddings_are_not_searched(acme, corpus):
    with tenant_context(acme.tenant):
        Chunk.objects.filter(document_id=corpus["Volcanic eruptions"]).update(embedding=None)

    question = "What happens when a mountain explodes with molten rock?"
    results = search(acme, query=question, k=10, max_distance=2.0).json()["results"]

    assert corpus["Volcanic eruptions"] not in {r["document_id"] for r in results}
    assert len(results) == len(CORPUS) - 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "x", "k": 0}, "k"),
        ({"query": "x", "k": -3}, "k"),
        ({"query": "x", "k": 51}, "k"),
        ({"query": "x", "k": "many"}, "k"),
        ({}, "query"),
        ({"query": ""}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({"query": "x", "max_distance": -0.1}, "max_distance"),
        ({"query": "x", "max_distance": 2.5}, "max_distance"),
        ({"query": "x", "document_ids": "3"}, "document_ids"),
        ({"query": "x", "document_ids": [0]}, "document_ids"),
    ],
)
def test_bad_search_input_is_a_400_naming_the_field(acme, payload, field):
    response = search(acme, **payload)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert error["message"]


def test_k_is_capped_by_the_setting(acme, corpus, settings):
    assert search(acme, query="x", k=settings.SEARCH_MAX_K).status_code == 200
    assert search(acme, query="x", k=settings.SEARCH_MAX_K + 1).status_code == 400


def test_search_needs_a_member_of_the_tenant(acme, globex, corpus):
    assert acme.client().post("/api/search/", {"query": "x"}, format="json").status_code == 401
    assert search(acme, token=globex.owner_token, query="x").status_code == 403


def test_search_runs_a_constant_number_of_queries(acme, ingest, django_assert_num_queries):
    client = acme.client(acme.member_token)
    with ingest():
        client.post(
            "/api/documents/", {"title": "Only", "content": "The only document about gardening."}, format="json"
        )
    with CaptureQueriesContext(connection) as one:
        assert len(search(acme, query="plants", k=10, max_distance=2.0).json()["results"]) == 1
    one_document = len(one)  # read now: the next request empties the connection's query log
    with ingest():
        for title, content in CORPUS.items():
            client.post("/api/documents/", {"title": title, "content": content}, format="json")

    with django_assert_num_queries(one_document):
        assert len(search(acme, query="plants", k=10, max_distance=2.0).json()["results"]) == 10


# Two tenants with near-identical documents


TWIN = "{name} revenue grew eleven percent this quarter, led by strong sales of garden furniture in the {region}."


@pytest.fixture
def twins(acme, globex, ingest) -> int:  # noqa: ANN001
    """The same document id (and chunk ids) in both tenants, with slightly different text."""
    ids_align(acme.tenant, globex.tenant)
    ids = []
    for world, region in ((acme, "north"), (globex, "south")):
        with ingest():
            response = world.client(world.member_token).post(
                "/api/documents/",
                {"title": "Quarterly results", "content": TWIN.format(name=world.tenant.name, region=region)},
                format="json",
            )
        ids.append(response.json()["id"])
    assert ids[0] == ids[1]
    return ids[0]


def test_search_only_returns_the_tenants_own_chunks_even_with_equal_ids(acme, globex, twins):
    for world, region in ((acme, "north"), (globex, "south")):
        (hit,) = search(world, query="How did furniture sales do?", k=10, max_distance=2.0).json()["results"]

        assert hit["document_id"] == twins
        assert hit["text"] == TWIN.format(name=world.tenant.name, region=region)
        with tenant_context(world.tenant):
            assert Chunk.objects.get(id=hit["chunk_id"]).text == hit["text"]
    acme_hit = search(acme, query="furniture", k=10, max_distance=2.0).json()["results"][0]
    globex_hit = search(globex, query="furniture", k=10, max_distance=2.0).json()["results"][0]
    assert acme_hit["chunk_id"] == globex_hit["chunk_id"]
    assert acme_hit["text"] != globex_hit["text"]


def test_filtering_by_another_tenants_document_ids_finds_nothing_of_theirs(acme, globex, twins, ingest):
    with ingest():
        other = (
            globex.client(globex.member_token)
            .post(
                "/api/documents/",
                {"title": "Globex only", "content": "Globex secret plans for garden furniture."},
                format="json",
            )
            .json()
        )

    response = search(acme, query="garden furniture plans", k=10, document_ids=[other["id"], twins])
    # An id that names no document here is refused, never dropped or widened (ids_align may make it acme's).
    assert response.status_code in (200, 404)
    results = response.json().get("results", [])

    assert all("Globex" not in r["text"] for r in results)
    assert {r["document_id"] for r in results} <= {twins}


def test_an_exact_search_leaves_no_planner_settings_behind_in_the_callers_transaction(acme, corpus, settings):
    vector = get_embedder().embed_query("anything")
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_indexscan'), current_setting('hnsw.ef_search')")
        before = cursor.fetchone()

        assert len(chunks_nearest(vector=vector, k=45, exact=True)) == len(CORPUS)

        cursor.execute("SELECT current_setting('enable_indexscan'), current_setting('hnsw.ef_search')")
        assert cursor.fetchone() == before == ("on", str(settings.HNSW_EF_SEARCH))


def test_an_ordinary_search_is_one_statement_on_the_settings_its_connection_opened_with(
    acme, corpus, settings, django_assert_num_queries
):
    vector = get_embedder().embed_query("anything")
    with tenant_context(acme.tenant):
        chunks_nearest(vector=vector, k=3)  # the tenant's search_path is set
        with django_assert_num_queries(1):
            ordinary = chunks_nearest(vector=vector, k=3)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')")
            assert cursor.fetchone() == (str(settings.HNSW_EF_SEARCH), "relaxed_order")

        # A setting changed after the connection opened: the search sets its own (SET LOCAL).
        settings.HNSW_EF_SEARCH += 1
        with CaptureQueriesContext(connection) as queries:
            changed = chunks_nearest(vector=vector, k=3)
        assert [chunk.id for chunk in changed] == [chunk.id for chunk in ordinary]
        assert any(f"'{settings.HNSW_EF_SEARCH}'" in query["sql"] for query in queries.captured_queries)


# Relevance: a threshold instead of "always k", one entry per document, a score for people


def test_by_default_only_relevant_passages_are_hits(acme, corpus, settings):
    results = search(acme, query="How can I keep hackers out of my online logins?").json()["results"]

    assert [r["title"] for r in results] == ["Account security"]
    assert all(r["distance"] <= settings.SEARCH_MAX_DISTANCE for r in results)
    assert search(acme, query="Who won the football cup final in 1966?").json()["results"] == []


def test_several_passages_of_one_document_are_one_entry_with_its_passages(acme, ingest):
    when = (
        "Refunds. When a customer returns an order, the refund is paid within thirty days of the parcel reaching "
        "our warehouse. Customers can ask for their money back for any reason during the first month. "
    )
    how = (
        "How refunds are paid. The money goes back to the card or account that paid for the order. We never force "
        "store credit on a customer who asked for a refund of a returned item. "
    )
    forklifts = " ".join(
        f"Forklift rule {n}: drivers wear helmets, keep to the marked lanes and park with the forks lowered."
        for n in range(12)
    )
    with ingest():
        response = acme.client(acme.member_token).post(
            "/api/documents/",
            {"title": "Refund policy", "content": f"{when * 3}\n\n{forklifts}\n\n{how * 3}"},
            format="json",
        )
    document_id = response.json()["id"]

    body = search(acme, query="How do I get my money back after returning something?", k=10).json()

    refund_hits = [r for r in body["results"] if r["document_id"] == document_id]
    assert len(refund_hits) >= 2
    assert not any("Forklift rule 4" in r["text"] for r in refund_hits)
    (entry,) = [d for d in body["documents"] if d["document_id"] == document_id]
    assert [p["chunk_id"] for p in entry["passages"]] == [r["chunk_id"] for r in refund_hits]
    assert entry["relevance"] == entry["passages"][0]["relevance"] == max(r["relevance"] for r in refund_hits)


@pytest.mark.parametrize(
    ("distance", "relevance"),
    [(0.0, 100), (0.2, 100), (0.325, 100), (0.4875, 50), (0.6, 15), (0.65, 0), (0.9, 0)],
)
def test_relevance_is_a_0_to_100_score_against_the_threshold(distance, relevance):
    assert relevance_score(distance, max_distance=0.65) == relevance


# Prepared: the kNN statement is planned once per pooled connection, never across tenants or settings


def _prepared_searches() -> dict[str, int]:
    """Executions of each prepared kNN statement on this connection (custom and generic plans)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, generic_plans + custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%<=>%"],
        )
        return dict(cursor.fetchall())


def test_an_ordinary_search_is_one_prepared_statement_per_connection(acme, corpus):
    vector = get_embedder().embed_query("anything")
    with tenant_context(acme.tenant):
        first = [chunk.id for chunk in chunks_nearest(vector=vector, k=3)]
        for _ in range(9):
            assert [chunk.id for chunk in chunks_nearest(vector=vector, k=3)] == first
    # Parsed once; PostgreSQL plans the first five executions for their values, then keeps one
    # plan if it costs no more (it does on a tenant's real table: bench_search, docs/benchmarks.md).
    assert list(_prepared_searches().values()) == [10]


def test_one_connection_alternating_tenants_searches_each_tenants_own_chunks(acme, globex, twins):
    vector = get_embedder().embed_query("How did furniture sales do?")
    for _ in range(8):  # past the five custom plans: a kept plan, re-planned when the schema changes
        for world, region in ((acme, "north"), (globex, "south")):
            with tenant_context(world.tenant):
                (chunk,) = chunks_nearest(vector=vector, k=1)
            assert chunk.text == TWIN.format(name=world.tenant.name, region=region)
    assert sum(_prepared_searches().values()) == 16


def test_an_exact_search_never_runs_a_kept_plan_made_for_the_index(acme, corpus):
    def hnsw_scans() -> int:  # this transaction's scans of the chunks' HNSW index
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_numscans(%s::regclass)", [f'"{acme.tenant.schema_name}".chunk_embedding_hnsw']
            )
            return cursor.fetchone()[0]

    vector = get_embedder().embed_query("anything")
    with tenant_context(acme.tenant):
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")  # the index, not a sort of a table this small
        for _ in range(7):
            ordinary = chunks_nearest(vector=vector, k=3)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = on")
        assert _prepared_searches() != {}
        scans = hnsw_scans()
        # Each search scanned the index (a plan may rescan it: runs saw 8 and 10 for 7 searches).
        assert scans >= 7
        exact = chunks_nearest(vector=vector, k=3, exact=True)
        # A kept plan ignores planner settings (enable_indexscan = off): the exact search plans its own.
        assert hnsw_scans() == scans
        assert len(exact) == len(ordinary) == 3


def test_without_prepared_statements_a_search_is_planned_each_time(acme, corpus, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    vector = get_embedder().embed_query("anything")
    with tenant_context(acme.tenant):
        for _ in range(3):
            assert len(chunks_nearest(vector=vector, k=3)) == 3
        assert _prepared_searches() == {}


def test_other_statements_are_neither_prepared_nor_remembered_by_the_connection(acme, corpus):
    vector = get_embedder().embed_query("anything")
    with tenant_context(acme.tenant):
        chunks_nearest(vector=vector, k=3)
        Chunk.objects.filter(id=-1).exists()
        manager = connection.connection._prepared  # psycopg's record: with client-side binding,
        assert manager.prepare_threshold is None  # a statement's text holds its values
        assert [query for query, _ in manager._counts] == []
        assert [query for query, _ in manager._names] == [query for query, _ in manager._names if b"<=>" in query] != []


def test_a_search_prepared_before_a_migration_changed_a_column_it_returns_runs_again(acme):
    """A kept statement may not change the columns it returns: after another connection altered one
    (a migration on a running platform), a pooled connection's next search prepares it again."""
    vector = get_embedder().embed_query("anything")
    document_table = f'"{acme.tenant.schema_name}"."{Document._meta.db_table}"'
    prepared, altered, results, errors = threading.Event(), threading.Event(), [], []

    def searches() -> None:  # a connection of its own, outside the test's transaction, as a request's
        try:
            with tenant_context(acme.tenant):
                for _ in range(6):
                    chunks_nearest(vector=vector, k=3)
                prepared.set()
                altered.wait(30)
                results.append(chunks_nearest(vector=vector, k=3))
                with connection.cursor() as cursor:
                    cursor.execute("DEALLOCATE ALL")  # the connection goes back to the pool as it came
        except Exception as exc:  # noqa: BLE001 - asserted in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=searches)
    thread.start()
    try:
        assert prepared.wait(30)
        with psycopg.connect(**_raw_connection_params(), autocommit=True) as migration:
            migration.execute(f"ALTER TABLE {document_table} ALTER COLUMN title TYPE varchar(301)")
            altered.set()
            thread.join(30)
            migration.execute(f"ALTER TABLE {document_table} ALTER COLUMN title TYPE varchar(300)")
    finally:
        altered.set()
        thread.join(30)
    assert errors == [] and len(results) == 1


def _raw_connection_params() -> dict[str, object]:
    params = connection.get_connection_params()
    return {name: params[name] for name in ("dbname", "user", "host") if params.get(name)}
