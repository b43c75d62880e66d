"""Who may read and change what, by every path: roles (owner, admin, a member named in a
``members`` collection, a member who is not, API keys with no collections, given that collection,
given another) x collection visibility (the restricted "Board" collection, the tenant-wide default)
x paths (API, pages, tenant admin, search, summaries, chat over WebSocket and SSE with what is sent
to the model, resume, conversation history after access is removed).

The restricted document's text carries a marker that must never reach anyone without access, by
any path; the tenant-wide one's must reach everyone it is meant for. The library is committed
once, in a tenant of its own, so the live server's threads see it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.db import connection, transaction
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from ai.embedding.embedders import get_embedder
from ai.models import Chunk, Collection, CollectionMember, Document
from core.models import User
from tenants.models import Membership
from tenants.services.api_keys import api_key_create
from tests.ai.chat_client import frames_until_end
from tests.ai.factories import DocumentFactory, world_create
from tests.conftest import World, host_client
from tests.factories import UserFactory

SECRET = "ZEPHYRQUOKKA"  # in the Board minutes only
PUBLIC = "MARMALADEFOX"  # in the tenant-wide canteen notice only
QUESTION = "What did the board decide about the merger with Northwind?"
BOARD_TEXT = f"Board minutes: the board decided to approve the merger with Northwind under plan {SECRET}."
CANTEEN_TEXT = f"Canteen notice: the canteen serves soup on Fridays under plan {PUBLIC}."

PEOPLE = ("owner", "admin", "insider", "outsider")
KEYS = ("key_plain", "key_board", "key_other")
ROLES = PEOPLE + KEYS
# Who may read the restricted Board collection, and the tenant-wide default one.
READS_BOARD = {"owner", "admin", "insider", "key_board"}
READS_DEFAULT = {"owner", "admin", "insider", "outsider", "key_plain"}  # a key given collections reads only those
ADMINS = {"owner", "admin"}


@dataclass
class Library:
    world: World
    board: int  # collection ids
    other: int
    secret: int  # document ids: the Board minutes (added by the owner) ...
    public: int  # ... and the canteen notice (added by the outsider)
    users: dict[str, User] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)  # "Token x" or "Bearer y"

    def client(self, role: str) -> APIClient:
        client = host_client(self.world.host)
        client.credentials(HTTP_AUTHORIZATION=self.credentials[role])
        return client

    def session(self, role: str) -> APIClient:
        return self.world.session_client(self.users[role])


def _embedded(document: Document, text: str) -> None:
    vector = get_embedder().embed_documents([text])[0]
    Chunk.objects.create(
        document=document,
        collection_id=document.collection_id,
        position=0,
        text=text,
        embedding=list(vector),
        embedding_model="m",
    )
    Document.objects.filter(pk=document.pk).update(chunk_count=1, status=Document.Status.READY)


@pytest.fixture(scope="module")
def library(django_db_setup, django_db_blocker) -> Library:  # noqa: ANN001
    with django_db_blocker.unblock():
        world = world_create("Matrix")
        with transaction.atomic():
            admin, insider = UserFactory(), UserFactory()
            Membership.objects.create(user=admin, tenant=world.tenant, role=Membership.Role.ADMIN)
            Membership.objects.create(user=insider, tenant=world.tenant, role=Membership.Role.MEMBER)
            users = {"owner": world.owner, "admin": admin, "insider": insider, "outsider": world.member}
            credentials = {"owner": f"Token {world.owner_token}", "outsider": f"Token {world.member_token}"}
            from rest_framework.authtoken.models import Token

            for role in ("admin", "insider"):
                credentials[role] = f"Token {Token.objects.create(user=users[role]).key}"
            keys = {}
            for role in KEYS:
                keys[role], raw = api_key_create(tenant=world.tenant, created_by=world.owner, name=role, scope="write")
                credentials[role] = f"Bearer {raw}"
                users[role] = keys[role].user
        with tenant_context(world.tenant), transaction.atomic():
            board = Collection.objects.create(name="Board", visibility=Collection.Visibility.MEMBERS)
            other = Collection.objects.create(name="Other")
            CollectionMember.objects.create(collection=board, user=insider)
            CollectionMember.objects.create(collection=board, user=keys["key_board"].user)
            CollectionMember.objects.create(collection=other, user=keys["key_other"].user)
            secret = DocumentFactory(
                title="Board minutes (confidential)", content=BOARD_TEXT, collection=board, created_by=world.owner
            )
            public = DocumentFactory(title="Canteen notice", content=CANTEEN_TEXT, created_by=world.member)
            _embedded(secret, BOARD_TEXT)
            _embedded(public, CANTEEN_TEXT)
        return Library(world, board.id, other.id, secret.id, public.id, users, credentials)


def _text(response: Any) -> str:
    return response.content.decode() if hasattr(response, "content") else str(response)


# --- reads over the API --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_the_document_api_lists_and_shows_only_what_the_role_may_read(library, role):
    client = library.client(role)

    listed = {d["id"] for d in client.get("/api/documents/").json()["results"]}
    secret = client.get(f"/api/documents/{library.secret}/")
    public = client.get(f"/api/documents/{library.public}/")

    assert (library.secret in listed) == (role in READS_BOARD)
    assert (library.public in listed) == (role in READS_DEFAULT)
    assert secret.status_code == (200 if role in READS_BOARD else 404)
    assert public.status_code == (200 if role in READS_DEFAULT else 404)
    if role not in READS_BOARD:
        assert SECRET not in _text(secret) and "Board minutes" not in _text(secret)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_search_finds_the_restricted_passage_only_for_those_who_may_read_it(library, role):
    client = library.client(role)

    response = client.post("/api/search/", {"query": QUESTION, "k": 5, "max_distance": 2.0}, format="json")
    scoped = client.post("/api/search/", {"query": QUESTION, "document_ids": [library.secret]}, format="json")
    by_collection = client.post("/api/search/", {"query": QUESTION, "collection_ids": [library.board]}, format="json")

    assert response.status_code == 200
    found = {hit["document_id"] for hit in response.json()["results"]}
    assert (library.secret in found) == (role in READS_BOARD)
    assert (library.public in found) == (role in READS_DEFAULT)
    # Asking for what one may not read is refused, never widened to what one may.
    assert scoped.status_code == (200 if role in READS_BOARD else 404)
    assert by_collection.status_code == (200 if role in READS_BOARD else 404)
    for answer in (response, scoped, by_collection):
        assert (SECRET in _text(answer)) == (role in READS_BOARD and answer.status_code == 200)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_summaries_read_only_readable_documents(library, role):
    response = library.client(role).post(f"/api/documents/{library.secret}/summarise/")

    assert response.status_code == (200 if role in READS_BOARD else 404)
    assert (SECRET in _text(response)) == (role in READS_BOARD)


# --- reads on the pages and in the tenant admin (people only) ---------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", PEOPLE)
def test_the_pages_show_the_restricted_document_only_to_those_who_may_read_it(library, role):
    session = library.session(role)
    reads = role in READS_BOARD

    listing = session.get("/")
    searched = session.get("/", {"q": QUESTION})
    page = session.get(f"/documents/{library.secret}/")
    summary = session.post(f"/documents/{library.secret}/summarise/")

    assert ("Board minutes" in _text(listing)) == reads
    assert (SECRET in _text(searched) or "Board minutes" in _text(searched)) == reads
    assert page.status_code == (200 if reads else 404) and (SECRET in _text(page)) == reads
    assert summary.status_code == (200 if reads else 404) and (SECRET in _text(summary)) == reads
    switcher = session.get(f"/?collection={library.board}")
    assert switcher.status_code == (200 if reads else 404)


@pytest.mark.django_db
@pytest.mark.parametrize("role", PEOPLE)
def test_the_tenant_admin_is_for_owners_and_admins_who_see_every_document(library, role):
    session = library.session(role)

    listing = session.get("/admin/ai/document/")
    change = session.get(f"/admin/ai/document/{library.secret}/change/")

    if role in ADMINS:
        assert listing.status_code == 200 and "Board minutes" in _text(listing)
        assert change.status_code == 200
    else:
        assert listing.status_code == 302 and change.status_code == 302  # to the admin's login
        assert SECRET not in _text(change)


# --- writes: members change their own documents, owners and admins any ---------------------


def _may_change_public(role: str) -> bool:
    # The canteen notice is the outsider's; keys changing it would have to have added it.
    return role in ADMINS or role == "outsider"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_only_the_author_or_an_admin_edits_or_deletes_a_document(library, role):
    client = library.client(role)
    edited = client.patch(f"/api/documents/{library.public}/", {"title": "Canteen notice"}, format="json")
    secret_edit = client.patch(f"/api/documents/{library.secret}/", {"title": "x"}, format="json")

    if _may_change_public(role):
        assert edited.status_code == 200
    else:
        assert edited.status_code == (403 if role in READS_DEFAULT else 404)
    assert secret_edit.status_code == (200 if role in ADMINS else 403 if role in READS_BOARD else 404)

    with transaction.atomic():  # the test's own transaction rolls the deletion back
        deleted = client.delete(f"/api/documents/{library.public}/")
        assert deleted.status_code == (204 if _may_change_public(role) else 403 if role in READS_DEFAULT else 404)
        transaction.set_rollback(True)


@pytest.mark.django_db
@pytest.mark.parametrize("role", PEOPLE)
def test_the_delete_page_follows_the_same_rule(library, role):
    session = library.session(role)
    with transaction.atomic():
        response = session.post(f"/documents/{library.public}/delete/")
        assert response.status_code == (302 if _may_change_public(role) else 403)
        transaction.set_rollback(True)


@pytest.mark.django_db
def test_a_member_never_sees_a_delete_button_for_someone_elses_document(library):
    insider = library.session("insider")
    page = _text(insider.get(f"/documents/{library.public}/"))
    own = _text(library.session("outsider").get(f"/documents/{library.public}/"))
    assert 'id="delete-document"' not in page and 'id="delete-document"' in own


@pytest.mark.django_db
def test_the_tenant_admin_deletes_through_the_service_and_audits(library):
    from tenants.audit.models import AuditEntry

    session = library.session("admin")
    with transaction.atomic():
        response = session.post(f"/admin/ai/document/{library.public}/delete/", {"post": "yes"})
        assert response.status_code == 302
        with tenant_context(library.world.tenant):
            assert not Document.objects.filter(id=library.public).exists()
        entry = AuditEntry.objects.filter(tenant_id=library.world.tenant.pk).latest("id")
        assert entry.action == "document.deleted" and entry.actor_label == library.users["admin"].email
        transaction.set_rollback(True)


# --- chat: WebSocket, SSE, resume, history -----------------------------------------------------


def _sent_upstream(fake: Any) -> str:
    return json.dumps([dict(request) for request in fake.requests])


async def _ws_ask(server: Any, library: Library, role: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    async with websockets.connect(
        f"ws://{library.world.host}:{server.port}/ws/chat/",
        additional_headers={"Authorization": library.credentials[role]},
        host="127.0.0.1",
        port=server.port,
        proxy=None,
        open_timeout=10,
    ) as ws:
        await ws.send(json.dumps(payload))
        return await frames_until_end(ws)


async def _sse(server: Any, library: Library, role: str, method: str, path: str, **kwargs: Any) -> tuple[int, str]:
    headers = {"Host": f"{library.world.host}:{server.port}", "Authorization": library.credentials[role]}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=20) as http,
        http.stream(method, path, **kwargs) as response,
    ):
        return response.status_code, (await response.aread()).decode()


@pytest.mark.asyncio
@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_chat_sends_the_restricted_passage_upstream_only_for_those_who_may_read_it(
    library, asgi_server, fake_anthropic, role, transport
):
    fake_anthropic.reply = "Here is what I found."
    if transport == "websocket":
        frames = await _ws_ask(asgi_server, library, role, {"message": QUESTION})
        body = json.dumps(frames)
        message_id = frames[0]["message_id"]
    else:
        status, body = await _sse(asgi_server, library, role, "POST", "/api/chat/", json={"message": QUESTION})
        assert status == 200
        message_id = json.loads(body.split("data: ", 2)[1].split("\n")[0])["message_id"]

    reads = role in READS_BOARD
    assert (SECRET in _sent_upstream(fake_anthropic)) == reads
    assert ("Board minutes" in body) == reads  # the sources of the done frame
    # Resuming replays the same frames to the asker, and to nobody else.
    status, replay = await _sse(asgi_server, library, role, "GET", f"/api/chat/{message_id}/stream/?after=0")
    assert status == 200 and ("Board minutes" in replay) == reads
    intruder = "insider" if role != "insider" else "outsider"
    status, _ = await _sse(asgi_server, library, intruder, "GET", f"/api/chat/{message_id}/stream/?after=0")
    assert status == 404


@pytest.mark.asyncio
@pytest.mark.django_db
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_scoped_chat_refuses_what_the_asker_may_not_read(library, asgi_server, fake_anthropic, transport):
    payload = {"message": QUESTION, "document_ids": [library.secret]}
    if transport == "websocket":
        frames = await _ws_ask(asgi_server, library, "outsider", payload)
        assert frames[-1]["type"] == "error" and frames[-1]["error"]["code"] == "document_not_found"
    else:
        status, body = await _sse(asgi_server, library, "outsider", "POST", "/api/chat/", json=payload)
        assert status == 404 and "document_not_found" in body
    assert SECRET not in _sent_upstream(fake_anthropic)


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_history_withholds_an_answer_once_its_reader_lost_access(library, asgi_server, fake_anthropic):
    fake_anthropic.reply = f"The minutes say {SECRET}."  # an answer that quotes the passage
    frames = await _ws_ask(asgi_server, library, "insider", {"message": QUESTION})
    conversation_id = frames[0]["conversation_id"]
    assert "Board minutes" in json.dumps(frames[-1]["sources"])

    def remove_and_read() -> tuple[str, str, str]:
        with tenant_context(library.world.tenant):
            CollectionMember.objects.filter(collection_id=library.board, user=library.users["insider"]).delete()
        try:
            api = library.client("insider").get(f"/api/conversations/{conversation_id}/")
            page = library.session("insider").get(f"/chat/{conversation_id}/")
            again = library.client("insider").get(f"/api/documents/{library.secret}/")
            return _text(api), _text(page), str(again.status_code)
        finally:
            with tenant_context(library.world.tenant):
                CollectionMember.objects.create(collection_id=library.board, user=library.users["insider"])
            # The test client's requests left this (shared sync) thread's connection in the tenant's
            # schema, as a request does; the next test's code on this thread starts in public.
            connection.set_schema_to_public()

    api, page, again = await database_sync_to_async(remove_and_read)()

    assert SECRET not in api and "Board minutes" not in api and "no longer read" in api
    assert SECRET not in page and "Board minutes" not in page
    assert again == "404"


@pytest.mark.asyncio
@pytest.mark.django_db
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_scoped_chat_reads_only_what_it_was_scoped_to(library, asgi_server, fake_anthropic, transport):
    canteen = "What does the canteen serve on Fridays?"
    # Unscoped, the insider's board question reads the minutes: scoped elsewhere, it must not.
    for scope, question, wanted, unwanted in (
        ({"document_ids": [library.public]}, QUESTION, None, SECRET),
        ({"document_ids": [library.public]}, canteen, PUBLIC, SECRET),
        ({"collection_ids": [library.board]}, QUESTION, SECRET, PUBLIC),
        ({"collection_ids": [library.board]}, canteen, None, PUBLIC),
    ):
        fake_anthropic.reset()
        payload = {"message": question, **scope}
        if transport == "websocket":
            frames = await _ws_ask(asgi_server, library, "insider", payload)
            assert frames[-1]["type"] == "done", frames[-1]
        else:
            status, _ = await _sse(asgi_server, library, "insider", "POST", "/api/chat/", json=payload)
            assert status == 200
        sent = _sent_upstream(fake_anthropic)
        assert (wanted is None or wanted in sent) and unwanted not in sent, (scope, question)


@pytest.mark.django_db
def test_ask_about_this_document_opens_a_chat_scoped_to_it(library):
    insider, outsider = library.session("insider"), library.session("outsider")

    page = _text(insider.get(f"/documents/{library.secret}/"))
    chat = insider.get(f"/chat/?document={library.secret}")
    refused = outsider.get(f"/chat/?document={library.secret}")

    assert f'href="/chat/?document={library.secret}"' in page
    assert chat.status_code == 200
    assert f'name="document_ids" value="{library.secret}" checked' in _text(chat)
    assert refused.status_code == 404 and "Board minutes" not in _text(refused)


@pytest.mark.asyncio
@pytest.mark.django_db
@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_regenerated_answer_finds_the_passages_of_its_question_again(
    library, asgi_server, fake_anthropic, transport
):
    """A regenerate frame carries no text: the passages are searched for the question it answers
    again (with the asker's access now), not for an empty question."""
    fake_anthropic.reply = "The board approved it."
    first = await _ws_ask(asgi_server, library, "insider", {"message": QUESTION})
    assert "Board minutes" in json.dumps(first[-1]["sources"])
    fake_anthropic.requests.clear()

    regenerate = {"type": "regenerate", "message_id": first[0]["message_id"]}
    if transport == "websocket":
        again = await _ws_ask(asgi_server, library, "insider", regenerate)
        sources = again[-1]["sources"]
        assert again[0]["replaces"] == first[0]["question_id"]
    else:
        status, body = await _sse(asgi_server, library, "insider", "POST", "/api/chat/", json=regenerate)
        assert status == 200
        sources = json.loads(body.rsplit("data: ", 1)[1].split("\n")[0])["sources"]

    assert [source["document_id"] for source in sources] == [s["document_id"] for s in first[-1]["sources"]]
    assert SECRET in _sent_upstream(fake_anthropic)
