"""`manage.py embed_documents`: batches, bulk updates, progress, every tenant or one, resuming, --reembed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context

from ai.embedding.embedders import get_embedder
from ai.models import Chunk, Document
from ai.selectors import schemas_with_embedding_work
from core.platform.exceptions import ApplicationError
from tests.ai.factories import ChunkFactory, DocumentFactory
from tests.fakes.voyage_server import DEFAULT_API_KEY, FakeVoyage, RecordedRequest

LOCAL_MODEL = "local/sentence-transformers/all-MiniLM-L6-v2"


def same_direction(actual, expected) -> bool:  # noqa: ANN001
    """The command may use bfloat16 maths (AMX CPUs): equal up to rounding, cosine > 0.999."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    return actual.shape == expected.shape and bool((np.sum(actual * expected, axis=1) > 0.999).all())


def unembedded(world, count: int, *, title: str = "Manual") -> Document:  # noqa: ANN001
    """A pending document whose chunks were stored without embeddings (an import, a crash, a model change)."""
    with tenant_context(world.tenant):
        document = DocumentFactory(title=title, status=Document.Status.PENDING, chunk_count=count)
        for position in range(count):
            ChunkFactory(
                document=document,
                position=position,
                text=f"{world.tenant.name} {title} paragraph {position} about shipping rules.",
            )
    return document


def embed(*args: str, **options: object) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("embed_documents", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def chunk_state(world) -> dict[int, tuple[str, list[float] | None]]:  # noqa: ANN001
    with tenant_context(world.tenant):
        return {
            chunk.id: (chunk.embedding_model, None if chunk.embedding is None else [float(x) for x in chunk.embedding])
            for chunk in Chunk.objects.order_by("id")
        }


def test_it_embeds_every_chunk_without_an_embedding_in_one_tenant(acme, globex):
    document = unembedded(acme, 5)
    unembedded(globex, 2)

    out, err = embed("--schema", acme.tenant.schema_name)

    assert f"{acme.tenant.schema_name}: embedded 5 chunk(s)" in out
    assert "Done: 5 chunk(s) embedded; 1 of 1 tenant(s) had work" in out
    assert "5/5" in err  # the progress bar...
    assert err.count("\r") >= 2 and err.count("chunk/s]\n") <= 1  # ...redrawn in place, not a line per update
    with tenant_context(acme.tenant):
        chunks = list(Chunk.objects.filter(document=document).order_by("position"))
        document.refresh_from_db()
    expected = get_embedder().embed_documents([chunk.text for chunk in chunks])
    assert all(chunk.embedding_model == LOCAL_MODEL for chunk in chunks)
    assert same_direction([chunk.embedding for chunk in chunks], expected)
    assert document.status == Document.Status.READY
    assert all(model == "" for model, _ in chunk_state(globex).values())


def test_without_a_schema_it_embeds_every_tenant(acme, globex):
    unembedded(acme, 3)
    unembedded(globex, 4)

    out, _ = embed()

    assert f"{acme.tenant.schema_name}: embedded 3 chunk(s)" in out
    assert f"{globex.tenant.schema_name}: embedded 4 chunk(s)" in out
    assert "Done: " in out
    for world in (acme, globex):
        assert all(model == LOCAL_MODEL and vector is not None for model, vector in chunk_state(world).values())


def test_an_unknown_schema_is_an_error(db):
    with pytest.raises(CommandError, match="No tenant with schema 'nope'"):
        embed("--schema", "nope")


def test_it_works_in_batches_with_one_bulk_update_each(acme):
    unembedded(acme, 7)

    with CaptureQueriesContext(connection) as queries:
        out, err = embed("--schema", acme.tenant.schema_name, "--batch-size", "3")

    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "ai_chunk"')]
    assert len(updates) == 3  # 3 + 3 + 1 chunks
    assert "embedded 7 chunk(s)" in out
    assert "7/7" in err


def test_chunks_that_already_have_an_embedding_are_left_alone(acme, ingest):
    with ingest():
        acme.client(acme.member_token).post(
            "/api/documents/", {"title": "Done", "content": "Already embedded."}, format="json"
        )
    before = chunk_state(acme)
    unembedded(acme, 2)

    out, _ = embed("--schema", acme.tenant.schema_name)

    assert "embedded 2 chunk(s)" in out
    after = chunk_state(acme)
    assert {chunk_id: after[chunk_id] for chunk_id in before} == before


class FailingVoyage(FakeVoyage):
    """Voyage's embeddings endpoint answering a 500 to the ``fail_request``-th call and to no other."""

    fail_request = 2

    def respond(self, request: RecordedRequest) -> tuple[int, dict]:
        if len(self.requests) + 1 == self.fail_request:
            self.record(request)
            return 500, {"detail": "Internal server error."}
        return super().respond(request)


@pytest.fixture
def failing_voyage(settings):  # noqa: ANN001
    with FailingVoyage() as fake:
        settings.EMBEDDING_BACKEND = "voyage"
        settings.EMBEDDING_MODEL = "voyage-3.5-lite"
        settings.VOYAGE_API_KEY = DEFAULT_API_KEY
        settings.VOYAGE_BASE_URL = fake.base_url
        yield fake


def test_an_interrupted_run_resumes_without_redoing_finished_batches(acme, failing_voyage):
    unembedded(acme, 8)

    with pytest.raises(ApplicationError, match="embedding provider returned an error"):
        embed("--schema", acme.tenant.schema_name, "--batch-size", "3")

    first_batch = [chunk_id for chunk_id, (model, _) in chunk_state(acme).items() if model]
    assert len(first_batch) == 3
    done_before = {chunk_id: chunk_state(acme)[chunk_id] for chunk_id in first_batch}
    sent_before = len(failing_voyage.requests)

    out, err = embed("--schema", acme.tenant.schema_name, "--batch-size", "3")

    assert "embedded 5 chunk(s)" in out
    assert "5/5" in err
    rerun = [text for request in failing_voyage.requests[sent_before:] for text in request.body["input"]]
    with tenant_context(acme.tenant):
        redone = Chunk.objects.filter(id__in=first_batch, text__in=rerun)
        assert not redone.exists()
        assert Document.objects.get().status == Document.Status.READY
    state = chunk_state(acme)
    assert all(model == "voyage/voyage-3.5-lite" for model, _ in state.values())
    assert {chunk_id: state[chunk_id] for chunk_id in first_batch} == done_before


def test_reembed_replaces_embeddings_made_by_another_model(acme, ingest):
    with ingest():
        acme.client(acme.member_token).post(
            "/api/documents/", {"title": "Current", "content": "Embedded by today's model."}, format="json"
        )
    current = chunk_state(acme)
    with tenant_context(acme.tenant):
        stale_document = DocumentFactory(title="Stale")
        stale = [
            ChunkFactory(
                document=stale_document,
                position=i,
                text=f"Old paragraph {i}.",
                embedding=[1.0] + [0.0] * 383,
                embedding_model="local/old-model",
            )
            for i in range(3)
        ]

    plain_out, _ = embed("--schema", acme.tenant.schema_name)
    out, _ = embed("--schema", acme.tenant.schema_name, "--reembed")

    assert "embedded 0 chunk(s)" in plain_out
    assert "embedded 3 chunk(s)" in out
    state = chunk_state(acme)
    assert {chunk_id: state[chunk_id] for chunk_id in current} == current
    expected = get_embedder().embed_documents([chunk.text for chunk in stale])
    for chunk, vector in zip(stale, expected, strict=True):
        model, stored = state[chunk.id]
        assert model == LOCAL_MODEL
        assert same_direction([stored], [vector])
    again, _ = embed("--schema", acme.tenant.schema_name, "--reembed")
    assert "embedded 0 chunk(s)" in again


def test_quiet_mode_prints_no_progress_bar(acme):
    unembedded(acme, 2)

    out, err = embed("--schema", acme.tenant.schema_name, verbosity=0)

    assert "embedded 2 chunk(s)" in out
    assert err == ""


def test_with_nothing_to_embed_the_model_is_never_loaded(acme, monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the embedding model was loaded with nothing to embed")

    monkeypatch.setattr("ai.embedding.embedders._load_model", refuse)

    out, _ = embed("--schema", acme.tenant.schema_name)

    assert f"{acme.tenant.schema_name}: embedded 0 chunk(s)" in out
    assert "0 of 1 tenant(s) had work" in out


def test_the_tenants_with_work_are_found_by_one_query_over_all_of_them(acme, globex):
    schemas = [acme.tenant.schema_name, globex.tenant.schema_name]
    assert schemas_with_embedding_work(schema_names=schemas) == []
    unembedded(globex, 2)

    with CaptureQueriesContext(connection) as queries:
        work = schemas_with_embedding_work(schema_names=schemas)

    assert work == [globex.tenant.schema_name]
    assert len([q for q in queries.captured_queries if ".ai_chunk WHERE" in q["sql"]]) == 1
    assert not [q for q in queries.captured_queries if q["sql"].startswith('SET search_path = "t_')]


def test_a_tenant_that_never_held_an_unembedded_chunk_is_not_even_queried(acme, unique_subdomain):
    from config.signup import tenant_signup
    from tests.factories import PASSWORD

    fresh = tenant_signup(
        organisation="Idle",
        subdomain=unique_subdomain,
        email=f"o@{unique_subdomain}.test",
        password=PASSWORD,
        plan="free",
    ).tenant
    connection.set_schema_to_public()

    with CaptureQueriesContext(connection) as queries:
        work = schemas_with_embedding_work(schema_names=[fresh.schema_name])

    assert work == []
    assert not [q for q in queries.captured_queries if f'{fresh.schema_name}".ai_chunk' in q["sql"]]
