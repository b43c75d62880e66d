import pytest
from django.db import transaction
from django_tenants.utils import tenant_context

from ai.models import Document
from tests.ai.factories import fresh_world
from tests.conftest import World, host_client
from tests.factories import PASSWORD


@pytest.fixture(scope="module")
def worlds(django_db_setup, django_db_blocker) -> dict[str, World]:  # noqa: ANN001
    """A pair of its own (as tests/ai/conftest.py gives every AI module): these tests count a
    tenant's documents, and live-server tests commit documents into the session's acme and globex.
    Its people log in with PASSWORD, as the session's do."""
    with django_db_blocker.unblock():
        return {"acme": fresh_world("Acme"), "globex": fresh_world("Globex")}


def make_document(world, title="Quarterly plan", content="Grow revenue.", **fields):
    with tenant_context(world.tenant):
        return Document.objects.create(title=title, content=content, created_by=world.owner, **fields)


def test_members_see_their_own_tenants_documents(acme):
    document = make_document(acme)

    response = acme.client(acme.member_token).get("/api/documents/")

    assert response.status_code == 200
    assert [d["id"] for d in response.json()["results"]] == [document.id]
    assert response.json()["results"][0]["created_by"] == acme.owner.email


def test_another_tenants_document_is_invisible_by_list_and_by_id(acme, globex):
    document = make_document(acme, title="Acme secret")

    listing = globex.client(globex.owner_token).get("/api/documents/")
    detail = globex.client(globex.owner_token).get(f"/api/documents/{document.id}/")

    assert listing.json()["count"] == 0
    assert detail.status_code == 404
    assert detail.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_same_id_in_another_tenant_never_reaches_the_other_row(acme, globex, method):
    globex_doc = make_document(globex, title="Globex")
    acme_doc = make_document(acme, title="Acme", id=globex_doc.id)  # the same id in two schemas

    response = getattr(globex.client(globex.owner_token), method)(
        f"/api/documents/{globex_doc.id}/", {"title": "Changed", "content": "x"}, format="json"
    )

    assert response.status_code in (200, 204)
    with tenant_context(acme.tenant):
        assert Document.objects.get(id=acme_doc.id).title == "Acme"


def test_a_token_of_another_tenant_gets_403(acme, globex):
    response = globex.client(acme.owner_token).get("/api/documents/")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_anonymous_requests_get_401(acme):
    response = acme.client().get("/api/documents/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_session_cookie_from_one_tenant_is_not_honoured_on_another(acme, globex):
    login = acme.client().post("/api/auth/login/", {"email": acme.owner.email, "password": PASSWORD}, format="json")
    assert login.status_code == 200
    session_cookie = login.cookies["sessionid"]
    assert not session_cookie["domain"], "session cookies must be host-only"

    on_acme = host_client(acme.host)
    on_acme.cookies["sessionid"] = session_cookie.value
    on_globex = host_client(globex.host)
    on_globex.cookies["sessionid"] = session_cookie.value

    assert on_acme.get("/api/documents/").status_code == 200
    assert on_globex.get("/api/documents/").status_code == 401


def test_crud_round_trip(acme):
    client = acme.client(acme.member_token)

    created = client.post("/api/documents/", {"title": "Notes", "content": "First"}, format="json").json()
    client.patch(f"/api/documents/{created['id']}/", {"content": "Second"}, format="json")
    assert client.get(f"/api/documents/{created['id']}/").json()["content"] == "Second"
    assert client.delete(f"/api/documents/{created['id']}/").status_code == 204
    assert client.get(f"/api/documents/{created['id']}/").status_code == 404


def test_bad_document_input_is_a_400_with_fields(acme):
    response = acme.client(acme.member_token).post("/api/documents/", {"title": ""}, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"title", "content"}


@pytest.mark.parametrize("count", [1, 15])
def test_document_list_runs_a_constant_number_of_queries(acme, django_assert_num_queries, count):
    for i in range(count):
        make_document(acme, title=f"Doc {i}")
    client = acme.client(acme.member_token)

    # tenant by host and token+user+membership (schema-qualified: no search_path for them,
    # tenants.credentials), the tenant's SET search_path (TENANT_LIMIT_SET_CALLS: once per checkout
    # and per schema switch) and the page with authors joined (a first page shorter than a page is
    # counted, not COUNTed)
    with django_assert_num_queries(4):
        response = client.get("/api/documents/")

    assert response.json()["count"] == count


def test_a_rolled_back_savepoint_does_not_leave_queries_in_the_wrong_schema(acme, globex):
    # TENANT_LIMIT_SET_CALLS skips the SET while the wrapper believes the path is set. A SET made
    # after a savepoint is undone by its rollback: the wrapper must forget it (django-tenants #1262),
    # or the next query runs in the schema the rollback restored, another tenant's.
    make_document(acme, title="Acme only")
    make_document(globex, title="Globex only")
    with tenant_context(acme.tenant), transaction.atomic():
        assert set(Document.objects.values_list("title", flat=True)) == {"Acme only"}
        savepoint = transaction.savepoint()
        with tenant_context(globex.tenant):
            assert set(Document.objects.values_list("title", flat=True)) == {"Globex only"}
            transaction.savepoint_rollback(savepoint)
            assert set(Document.objects.values_list("title", flat=True)) == {"Globex only"}
