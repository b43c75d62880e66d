"""Tenant API keys: shown once, stored hashed, Bearer on REST, SSE and the WebSocket, only on
their own tenant's host; read keys only read; what a key causes is attributed to it."""

import hashlib
import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django_tenants.utils import tenant_context

from ai.models import AgentAction, Document
from billing.models import UsageEvent
from tenants.models import ApiKey
from tenants.services.api_keys import api_key_create, api_key_revoke
from tests.ai.chat_client import answer_text, ask
from tests.conftest import host_client


def bearer(host, key):
    client = host_client(host)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def make_key(world, scope="write", name="ci"):
    return api_key_create(tenant=world.tenant, created_by=world.owner, name=name, scope=scope)


def test_a_key_is_shown_once_and_stored_only_as_a_hash(acme):
    created = acme.client(acme.owner_token).post(
        "/api/keys/", {"name": "Nightly import", "scope": "read"}, format="json"
    )

    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"id", "name", "scope", "prefix", "key", "created"}
    assert body["key"].startswith(body["prefix"] + ".")
    assert created["Cache-Control"] == "no-store"
    listed = [
        row for row in acme.client(acme.owner_token).get("/api/keys/").json()["results"] if row["id"] == body["id"]
    ]
    assert listed == [
        {
            "id": body["id"],
            "name": "Nightly import",
            "scope": "read",
            "prefix": body["prefix"],
            "created_by": acme.owner.email,
            "created": body["created"],
            "last_used": None,
        }
    ]
    row = ApiKey.objects.filter(pk=body["id"]).values().get()
    assert row["hashed_key"] == "sha512$$" + hashlib.sha512(body["key"].encode()).hexdigest()
    assert not any(body["key"].split(".")[1] in str(value) for value in row.values())


def test_a_read_key_reads_and_searches_but_cannot_write(acme):
    _, key = make_key(acme, scope="read")
    client = bearer(acme.host, key)

    assert client.get("/api/documents/").status_code == 200
    assert client.post("/api/search/", {"query": "anything"}, format="json").status_code == 200
    assert client.get("/api/usage/").status_code == 200
    refused = client.post("/api/documents/", {"title": "No", "content": "no"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "read_only_key"
    assert client.post("/api/chat/", {"message": "hi"}, format="json").status_code == 403
    assert client.post("/api/conversations/", {}, format="json").status_code == 403


def test_a_write_key_writes_and_its_work_is_its_own(acme):
    api_key, key = make_key(acme, scope="write")

    created = bearer(acme.host, key).post("/api/documents/", {"title": "From CI", "content": "Hello"}, format="json")

    assert created.status_code == 201
    with tenant_context(acme.tenant):
        assert Document.objects.get(pk=created.json()["id"]).created_by_id == api_key.user_id
    assert api_key.user_id not in (acme.owner.id, acme.member.id)


def test_a_key_works_only_on_its_own_tenants_host(acme, globex):
    _, key = make_key(acme)

    other = bearer(globex.host, key).get("/api/documents/")
    public = bearer("localhost", key).get("/api/auth/user/")

    assert other.status_code == 401
    assert other.json()["error"]["code"] == "not_authenticated"
    assert public.status_code == 401


@pytest.mark.parametrize("value", ["nonsense", "abc.def", "", "a.b.c"])
def test_a_wrong_bearer_value_is_a_401(acme, value):
    response = host_client(acme.host, None)
    response.credentials(HTTP_AUTHORIZATION=f"Bearer {value}".strip())

    assert response.get("/api/documents/").status_code == 401


def test_a_revoked_key_is_refused_and_unlisted(acme):
    api_key, key = make_key(acme)
    assert bearer(acme.host, key).get("/api/documents/").status_code == 200

    assert acme.client(acme.owner_token).delete(f"/api/keys/{api_key.id}/").status_code == 204

    assert bearer(acme.host, key).get("/api/documents/").status_code == 401
    listed = acme.client(acme.owner_token).get("/api/keys/").json()["results"]
    assert api_key.id not in [row["id"] for row in listed]
    assert ApiKey.objects.get(pk=api_key.pk).revoked is not None  # kept for the ledger


def test_a_key_cannot_manage_people_keys_or_billing(acme):
    _, key = make_key(acme, scope="write")
    client = bearer(acme.host, key)

    for method, path in [
        ("get", "/api/keys/"),
        ("post", "/api/keys/"),
        ("get", "/api/members/"),
        ("get", "/api/invitations/"),
        ("post", "/api/invitations/"),
        ("post", "/api/billing/portal/"),
    ]:
        response = getattr(client, method)(path, {"name": "x", "scope": "write", "email": "a@b.c"}, format="json")
        assert response.status_code == 403, (method, path, response.content)


def test_members_cannot_manage_keys_and_tenants_see_only_their_own(acme, globex):
    make_key(acme)

    assert acme.client(acme.member_token).get("/api/keys/").status_code == 403
    assert (
        acme.client(acme.member_token).post("/api/keys/", {"name": "x", "scope": "read"}, format="json").status_code
        == 403
    )
    assert globex.client(globex.owner_token).get("/api/keys/").json()["count"] == 0
    api_key, _ = make_key(acme)
    assert globex.client(globex.owner_token).delete(f"/api/keys/{api_key.id}/").status_code == 404


def test_last_used_is_noted(acme):
    api_key, key = make_key(acme)

    bearer(acme.host, key).get("/api/documents/")

    assert ApiKey.objects.get(pk=api_key.pk).last_used is not None


def test_usage_a_key_causes_is_attributed_to_it(acme, fake_anthropic):
    api_key, key = make_key(acme)
    fake_anthropic.reply = "A short summary."
    client = bearer(acme.host, key)
    document_id = client.post(
        "/api/documents/", {"title": "Minutes", "content": "Revenue rose."}, format="json"
    ).json()["id"]

    response = client.post(f"/api/documents/{document_id}/summarise/")

    assert response.status_code == 200
    event = UsageEvent.objects.filter(tenant_id=acme.tenant.id).latest("id")
    assert event.api_key_id == api_key.id
    assert event.user_id == api_key.user_id
    with tenant_context(acme.tenant):
        action = AgentAction.objects.latest("id")
    assert action.api_key_id == api_key.id


def test_a_persons_usage_names_no_key(acme, fake_anthropic):
    fake_anthropic.reply = "Summary."
    client = acme.client(acme.member_token)
    document_id = client.post("/api/documents/", {"title": "M", "content": "Text."}, format="json").json()["id"]

    client.post(f"/api/documents/{document_id}/summarise/")

    event = UsageEvent.objects.filter(tenant_id=acme.tenant.id).latest("id")
    assert event.api_key_id is None and event.user_id == acme.member.id


def test_the_keys_page_shows_a_new_key_once(acme):
    client = acme.session_client(acme.owner)

    created = client.post("/keys/", {"action": "create", "name": "Page key", "scope": "write"})
    again = client.get("/keys/")

    api_key = ApiKey.objects.get(name="Page key")
    assert created.status_code == 201
    assert created["Cache-Control"] == "no-store"
    page = created.content.decode()
    secret = page.split('id="new-key-value">')[1].split("<")[0]
    assert secret.startswith(api_key.prefix + ".")
    assert bearer(acme.host, secret).get("/api/documents/").status_code == 200
    assert secret not in again.content.decode() and api_key.prefix in again.content.decode()
    assert acme.session_client(acme.member).get("/keys/").status_code == 403


# --- SSE and WebSocket against the live server (keys committed for the whole module) -------------


@pytest.fixture
def no_retrieval(settings):
    # Retrieval is not what these tests are about; skipping it keeps the embedding model out of them.
    settings.CHAT_CONTEXT_CHUNKS = 0


@pytest.fixture(scope="module")
def live_keys(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        acme = django_db_setup["acme"]
        write, write_key = make_key(acme, scope="write", name="live write")
        _, read_key = make_key(acme, scope="read", name="live read")
        revoked, revoked_key = make_key(acme, scope="write", name="live revoked")
        api_key_revoke(tenant=acme.tenant, api_key_id=revoked.id)
    return {"write": write, "write_key": write_key, "read_key": read_key, "revoked_key": revoked_key}


async def connect(server, subdomain, key):
    return await websockets.connect(
        f"ws://{subdomain}.localhost:{server.port}/ws/chat/",
        additional_headers={"Authorization": f"Bearer {key}"},
        host="127.0.0.1",
        port=server.port,
        proxy=None,
        open_timeout=10,
    )


def attributed(world, message_id, api_key_id):
    with tenant_context(world.tenant):
        action = AgentAction.objects.filter(api_key_id=api_key_id).latest("id")
    event = UsageEvent.objects.filter(tenant_id=world.tenant.id, api_key_id=api_key_id).latest("id")
    return action, event


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_a_write_key_chats_over_the_websocket_and_the_usage_is_the_keys(
    live_worlds, asgi_server, fake_anthropic, live_keys, no_retrieval
):
    fake_anthropic.reply = "Keys can chat too."
    async with await connect(asgi_server, "acme", live_keys["write_key"]) as ws:
        frames = await ask(ws, "Can a program chat?")

    assert answer_text(frames) == fake_anthropic.reply
    action, event = await database_sync_to_async(attributed)(
        live_worlds["acme"], frames[0]["message_id"], live_keys["write"].id
    )
    assert action.output_text == fake_anthropic.reply
    assert event.total_tokens > 0 and event.user_id == live_keys["write"].user_id


@pytest.mark.asyncio
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("subdomain", "which", "status"),
    [("globex", "write_key", 401), ("acme", "revoked_key", 401), ("acme", "read_key", 403)],
)
async def test_the_chat_socket_refuses_foreign_revoked_and_read_keys(
    live_worlds, asgi_server, live_keys, subdomain, which, status
):
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        await connect(asgi_server, subdomain, live_keys[which])

    assert refused.value.response.status_code == status


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_a_write_key_streams_over_sse_and_a_read_key_is_refused(
    live_worlds, asgi_server, fake_anthropic, live_keys, no_retrieval
):
    fake_anthropic.reply = "Streamed for a program."
    headers = {"Host": f"acme.localhost:{asgi_server.port}"}
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=headers, timeout=20) as http:
        streamed = await http.post(
            "/api/chat/", json={"message": "hello"}, headers={"Authorization": f"Bearer {live_keys['write_key']}"}
        )
        read = await http.post(
            "/api/chat/", json={"message": "hello"}, headers={"Authorization": f"Bearer {live_keys['read_key']}"}
        )
        foreign = await http.post(
            "/api/chat/",
            json={"message": "hello"},
            headers={
                "Authorization": f"Bearer {live_keys['write_key']}",
                "Host": f"globex.localhost:{asgi_server.port}",
            },
        )

    assert streamed.status_code == 200
    frames = [json.loads(line[len("data: ") :]) for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert answer_text(frames) == fake_anthropic.reply
    assert frames[-1]["type"] == "done"
    assert read.status_code == 403
    assert foreign.status_code == 401
