"""Collections: the default one every tenant has, the API that manages them (owners and admins),
documents that go into them, and deleting one (its documents moved first, audited)."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_tenants.utils import tenant_context

from ai.models import Collection, CollectionMember, Document
from tenants.audit.models import AuditEntry
from tenants.models import Membership
from tenants.services.api_keys import api_key_create
from tests.ai.factories import DocumentFactory, world_create

pytestmark = pytest.mark.django_db


def _create(world, token: str, **payload: object):  # noqa: ANN001, ANN202
    return world.client(token).post("/api/collections/", payload, format="json")


def test_a_new_tenant_starts_with_its_default_collection_and_documents_go_there(acme):
    fresh = world_create("Fresh")  # cloned from the template: the migration's row comes with it
    with tenant_context(fresh.tenant):
        default = Collection.objects.get()
        assert default.is_default and default.visibility == Collection.Visibility.TENANT
    created = fresh.client(fresh.member_token).post(
        "/api/documents/", {"title": "Note", "content": "Some text."}, format="json"
    )
    assert created.status_code == 201 and created.json()["collection_id"] == default.id


def test_the_migration_moves_documents_without_a_collection_into_the_default_one(acme):
    fill = importlib.import_module("ai.migrations.0007_collections").default_collection_fill
    with tenant_context(acme.tenant):
        state = MigrationExecutor(connection).loader.project_state(("ai", "0007_collections"))
        with connection.cursor() as cursor:  # as the rows stood before the migration: no collection
            cursor.execute("ALTER TABLE ai_document ALTER COLUMN collection_id DROP NOT NULL")
        document = DocumentFactory(title="Before collections")
        Document.objects.filter(pk=document.pk).update(collection=None)

        fill(state.apps, None)

        default = Collection.objects.get(is_default=True)  # still one: the step is idempotent
        assert Document.objects.get(pk=document.pk).collection_id == default.id


def test_owners_create_collections_members_may_not(acme, new_member):
    person, _ = new_member(acme)
    refused = _create(acme, acme.member_token, name="Board")
    assert refused.status_code == 403

    response = _create(acme, acme.owner_token, name="Board", visibility="members", member_ids=[person.id])

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "Board" and body["visibility"] == "members"
    assert body["member_ids"] == [person.id] and body["document_count"] == 0


def test_a_collection_names_only_members_of_the_organisation_and_its_keys(acme, globex):
    outsider = _create(acme, acme.owner_token, name="X", member_ids=[globex.member.id])
    assert outsider.status_code == 400 and "member_ids" in outsider.json()["error"]["fields"]

    globex_key, _ = api_key_create(tenant=globex.tenant, created_by=globex.owner, name="theirs", scope="read")
    foreign_key = _create(acme, acme.owner_token, name="Y", api_key_ids=[globex_key.id])
    assert foreign_key.status_code == 400 and "api_key_ids" in foreign_key.json()["error"]["fields"]

    key, _ = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="sync", scope="write")
    response = _create(acme, acme.owner_token, name="Z", api_key_ids=[key.id], member_ids=[acme.member.id])
    assert response.status_code == 201
    assert response.json()["api_key_ids"] == [key.id] and response.json()["member_ids"] == [acme.member.id]
    members = acme.client(acme.owner_token).get(f"/api/collections/{response.json()['id']}/members/").json()
    assert [p["email"] for p in members["people"]] == [acme.member.email]
    assert [k["name"] for k in members["keys"]] == ["sync"]


def test_names_are_unique_whatever_their_case(acme):
    assert _create(acme, acme.owner_token, name="Legal").status_code == 201
    again = _create(acme, acme.owner_token, name="legal")
    assert again.status_code == 400 and "name" in again.json()["error"]["fields"]


def test_patch_renames_and_replaces_the_people_keeping_the_keys(acme, new_member):
    person, _ = new_member(acme)
    key, _ = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="bot", scope="read")
    collection = _create(acme, acme.owner_token, name="Ops", visibility="members", api_key_ids=[key.id]).json()
    client = acme.client(acme.owner_token)

    response = client.patch(
        f"/api/collections/{collection['id']}/", {"name": "Operations", "member_ids": [person.id]}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Operations"
    assert response.json()["member_ids"] == [person.id] and response.json()["api_key_ids"] == [key.id]
    assert acme.client(acme.member_token).patch(
        f"/api/collections/{collection['id']}/", {"name": "Mine"}, format="json"
    ).status_code in (403, 404)


def test_the_default_collection_stays_tenant_wide_and_cannot_be_deleted(acme):
    client = acme.client(acme.owner_token)
    with tenant_context(acme.tenant):
        default = Collection.objects.get(is_default=True)

    private = client.patch(f"/api/collections/{default.id}/", {"visibility": "members"}, format="json")
    deleted = client.delete(f"/api/collections/{default.id}/")

    assert private.status_code == 400
    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "default_collection"


def test_deleting_a_collection_with_documents_needs_somewhere_to_move_them(acme):
    client = acme.client(acme.owner_token)
    old = _create(acme, acme.owner_token, name="Old").json()
    new = _create(acme, acme.owner_token, name="New").json()
    document = client.post(
        "/api/documents/", {"title": "Kept", "content": "Keep me.", "collection_id": old["id"]}, format="json"
    ).json()

    refused = client.delete(f"/api/collections/{old['id']}/")
    nowhere = client.delete(f"/api/collections/{old['id']}/?move_to=999999")
    moved = client.delete(f"/api/collections/{old['id']}/?move_to={new['id']}")

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "collection_not_empty"
    assert nowhere.status_code == 404
    assert moved.status_code == 204
    assert client.get(f"/api/documents/{document['id']}/").json()["collection_id"] == new["id"]
    entry = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="collection.deleted").latest("id")
    assert entry.target == f"collection {old['id']}: Old" and entry.changes["documents_moved"] == 1
    assert entry.actor_label == acme.owner.email


def test_an_empty_collection_is_deleted_without_moving_anything(acme):
    empty = _create(acme, acme.owner_token, name="Empty").json()
    assert acme.client(acme.owner_token).delete(f"/api/collections/{empty['id']}/").status_code == 204
    with tenant_context(acme.tenant):
        assert not Collection.objects.filter(id=empty["id"]).exists()
        assert not CollectionMember.objects.filter(collection_id=empty["id"]).exists()


def test_a_document_goes_only_into_a_collection_its_author_may_read(acme, new_member):
    person, token = new_member(acme)
    closed = _create(acme, acme.owner_token, name="Closed", visibility="members").json()
    open_ = _create(acme, acme.owner_token, name="Open", visibility="members", member_ids=[person.id]).json()
    client = acme.client(token)

    refused = client.post(
        "/api/documents/", {"title": "t", "content": "c", "collection_id": closed["id"]}, format="json"
    )
    unknown = client.post("/api/documents/", {"title": "t", "content": "c", "collection_id": 999999}, format="json")
    accepted = client.post(
        "/api/documents/", {"title": "t", "content": "c", "collection_id": open_["id"]}, format="json"
    )

    assert refused.status_code == 404 and unknown.status_code == 404
    assert accepted.status_code == 201 and accepted.json()["collection_id"] == open_["id"]


def test_members_list_the_collections_they_may_read_admins_all(acme, new_member):
    person, token = new_member(acme)
    _create(acme, acme.owner_token, name="Secret", visibility="members")
    _create(acme, acme.owner_token, name="Theirs", visibility="members", member_ids=[person.id])
    _create(acme, acme.owner_token, name="Everyone")
    admin, admin_token = new_member(acme, Membership.Role.ADMIN)

    def names(token: str) -> set[str]:
        return {c["name"] for c in acme.client(token).get("/api/collections/").json()["results"]}

    assert {"Theirs", "Everyone"} <= names(token) and "Secret" not in names(token)
    assert {"Secret", "Theirs", "Everyone"} <= names(admin_token)


def test_the_list_comes_default_first_then_by_name_on_every_page(acme):
    """Counting each collection's documents groups the rows, which drops the model's ordering: the
    pages must not be in whatever order the grouping left them (rows missed or repeated)."""
    names = [f"Shelf {n:02d}" for n in range(30)]
    for name in reversed(names):
        _create(acme, acme.owner_token, name=name)
    client = acme.client(acme.owner_token)

    seen, url = [], "/api/collections/"
    while url:
        page = client.get(url).json()
        seen += [c["name"] for c in page["results"]]
        url = page["next"]

    with tenant_context(acme.tenant):
        default = Collection.objects.get(is_default=True).name
    assert seen == [default, *names]  # two pages of 20: none missed, none twice


def test_the_collection_list_takes_a_constant_number_of_queries(acme, django_assert_max_num_queries):
    for i in range(5):
        _create(acme, acme.owner_token, name=f"C{i}", member_ids=[acme.member.id])
    client = acme.client(acme.owner_token)
    client.get("/api/collections/")  # warm

    # tenant, token+user, membership, count, page, keys, grants, search_path changes
    with django_assert_max_num_queries(9):
        assert client.get("/api/collections/").status_code == 200


def test_a_key_given_collections_adds_documents_only_there(acme):
    key, raw = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="sync", scope="write")
    board = _create(acme, acme.owner_token, name="Board", visibility="members", api_key_ids=[key.id]).json()
    client = acme.client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    nowhere = client.post("/api/documents/", {"title": "t", "content": "c"}, format="json")
    there = client.post("/api/documents/", {"title": "t", "content": "c", "collection_id": board["id"]}, format="json")

    assert nowhere.status_code == 400 and nowhere.json()["error"]["code"] == "collection_required"
    assert there.status_code == 201 and there.json()["collection_id"] == board["id"]
