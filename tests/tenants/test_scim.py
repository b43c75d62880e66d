"""SCIM 2.0 provisioning per tenant, driven by the requests Okta and Microsoft Entra publish: the
token, create / filter / deactivate / reactivate / replace / delete, groups as roles, tenants kept
apart, malformed bodies, and deprovisioning reaching a session, a token, a key and a socket."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_tenants.utils import tenant_context
from rest_framework.test import APIClient

from core.models import User
from tenants.audit.models import AuditEntry
from tenants.models import ApiKey, Membership
from tenants.scim.models import ScimUser
from tenants.scim.services import scim_token_create
from tenants.services.api_keys import api_key_create
from tenants.services.status import tenant_suspend
from tests.ai.chat_client import receive
from tests.ai.factories import world_create
from tests.conftest import World, host_client

SCIM = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


def eq(attribute: str, value: str) -> str:
    """The query string of a SCIM ``eq`` filter, as the providers send it."""
    return "filter=" + quote(f'{attribute} eq "{value}"')


class Scim:
    """An identity provider's HTTP client for one tenant host."""

    def __init__(self, host: str, token: str | None) -> None:
        self.http = APIClient(HTTP_HOST=host)
        if token is not None:
            self.http.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def send(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        call = getattr(self.http, method.lower())
        return call(f"/scim/v2/{path}", data=data, content_type=SCIM) if data is not None else call(f"/scim/v2/{path}")

    def get(self, path: str) -> Any:
        return self.send("GET", path)

    def users_named(self, user_name: str) -> dict[str, Any]:
        response = self.get(f"Users?{eq('userName', user_name)}&startIndex=1&count=100")
        assert response.status_code == 200, response.content
        return response.json()


def scim_for(world: World) -> Scim:
    return Scim(world.host, scim_token_create(tenant=world.tenant, created_by=world.owner).raw)


def okta_user(user_name: str, **overrides: Any) -> dict[str, Any]:
    """Okta's create request (developer.okta.com, "SCIM 2.0 protocol reference": Create the user)."""
    body = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Test User",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    return body | overrides


def entra_user(user_name: str) -> dict[str, Any]:
    """Microsoft Entra's create request (learn.microsoft.com, "Tutorial: Develop and plan
    provisioning for a SCIM endpoint", Create User)."""
    return {
        "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
    }


OKTA_DEACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
OKTA_REACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]}
ENTRA_DEACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
ENTRA_REACTIVATE = {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]}


def member_of(world: World, email: str) -> Membership | None:
    return Membership.objects.filter(tenant=world.tenant, user__email=email).first()


def assert_scim_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == SCIM
    body = response.json()
    assert body["schemas"] == [ERROR] and str(body["status"]) == str(status) and body["detail"]
    return body


# --- The token ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_owner_gets_a_token_once_and_a_new_one_replaces_the_old_at_once(acme: World) -> None:
    owner = acme.client(acme.owner_token)

    first = owner.post("/api/sso/scim-token/")
    second = owner.post("/api/sso/scim-token/")
    shown = owner.get("/api/sso/scim-token/")

    assert first.status_code == second.status_code == 201
    assert first["Cache-Control"] == "no-store"
    assert first.json()["scim_url"] == f"http://{acme.host}/scim/v2/"
    assert shown.status_code == 200 and "token" not in shown.json()
    assert shown.json()["prefix"] == second.json()["prefix"] and shown.json()["created_by"] == acme.owner.email
    assert_scim_error(Scim(acme.host, first.json()["token"]).get("Users"), 401)
    assert Scim(acme.host, second.json()["token"]).get("Users").status_code == 200


@pytest.mark.django_db
def test_a_revoked_token_is_refused(acme: World) -> None:
    owner = acme.client(acme.owner_token)
    token = owner.post("/api/sso/scim-token/").json()["token"]

    assert owner.delete("/api/sso/scim-token/").status_code == 204

    assert_scim_error(Scim(acme.host, token).get("Users"), 401)
    assert owner.get("/api/sso/scim-token/").status_code == 404
    assert owner.delete("/api/sso/scim-token/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["member", "admin"])
def test_only_owners_make_or_revoke_the_token(acme: World, new_member: Any, role: str) -> None:
    _, login_token = new_member(acme, role)
    client = acme.client(login_token)

    assert client.post("/api/sso/scim-token/").status_code == 403
    assert client.delete("/api/sso/scim-token/").status_code == 403


@pytest.mark.django_db
def test_the_token_is_stored_hashed(acme: World) -> None:
    issued = scim_token_create(tenant=acme.tenant, created_by=acme.owner)

    assert issued.raw.startswith(issued.token.prefix + ".")
    assert issued.raw.split(".", 1)[1] not in issued.token.hashed_key


# --- Who may call ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_suspended_workspace_answers_its_provider_in_scims_error_shape(acme: World) -> None:
    scim = scim_for(acme)
    tenant_suspend(tenant=acme.tenant, reason="Unpaid invoice.")

    body = assert_scim_error(scim.send("POST", "Users", okta_user("later@acme.test")), 403)

    assert "suspended" in body["detail"]
    assert member_of(acme, "later@acme.test") is None


@pytest.mark.django_db
def test_a_token_works_only_on_its_own_tenant(acme: World, globex: World) -> None:
    acme_token = scim_token_create(tenant=acme.tenant, created_by=acme.owner).raw
    scim_for(globex)

    refused = Scim(globex.host, acme_token).send("POST", "Users", okta_user("intruder@example.com"))

    body = assert_scim_error(refused, 401)
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert "token" in body["detail"]
    assert not ScimUser.objects.filter(user_name="intruder@example.com").exists()


@pytest.mark.django_db
def test_no_token_a_login_token_or_an_api_key_is_refused(acme: World) -> None:
    scim_for(acme)
    _, api_key = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="ci", scope="write")
    owner_by_login_token = host_client(acme.host, acme.owner_token)

    assert_scim_error(Scim(acme.host, None).get("Users"), 401)
    assert_scim_error(Scim(acme.host, api_key).get("Users"), 401)
    assert_scim_error(Scim(acme.host, "nodot").get("Users"), 401)
    assert owner_by_login_token.get("/scim/v2/Users").status_code == 401


@pytest.mark.django_db
def test_a_provider_past_its_organisations_rate_gets_a_scim_429_and_another_is_served(
    acme: World, globex: World, settings: Any
) -> None:
    settings.SCIM_REQUESTS_PER_MINUTE = 3
    acme_idp, globex_idp = scim_for(acme), scim_for(globex)

    served = [acme_idp.get("Users").status_code for _ in range(3)]
    refused = acme_idp.get("Users")

    assert served == [200, 200, 200]
    assert_scim_error(refused, 429)
    assert 0 < int(refused["Retry-After"]) <= 60
    assert globex_idp.get("Users").status_code == 200


@pytest.mark.django_db
def test_an_address_sending_bad_tokens_is_slowed_and_a_valid_token_still_passes(acme: World) -> None:
    acme_idp = scim_for(acme)
    guesser = Scim(acme.host, "guess.notthetoken")

    answers = [guesser.get("Users").status_code for _ in range(31)]  # ACCOUNT_LINK_THROTTLE_RATE: 30/hour

    assert answers == [401] * 30 + [429]
    assert_scim_error(guesser.get("Users"), 429)
    assert acme_idp.get("Users").status_code == 200


@pytest.mark.django_db
def test_the_user_list_holds_this_tenants_people_only(acme: World, globex: World) -> None:
    acme_idp, globex_idp = scim_for(acme), scim_for(globex)
    mine = acme_idp.send("POST", "Users", okta_user("ann@acme-idp.test")).json()
    theirs = globex_idp.send("POST", "Users", okta_user("bob@globex-idp.test")).json()
    either = quote('userName eq "ann@acme-idp.test" or userName eq "bob@globex-idp.test"')

    listed = acme_idp.get("Users").json()
    filtered = acme_idp.get(f"Users?filter={either}").json()

    assert [u["userName"] for u in listed["Resources"]] == ["ann@acme-idp.test"]
    assert listed["totalResults"] == 1
    assert [u["id"] for u in filtered["Resources"]] == [mine["id"]]
    assert acme_idp.users_named("bob@globex-idp.test")["totalResults"] == 0
    assert_scim_error(acme_idp.get(f"Users/{theirs['id']}"), 404)
    assert_scim_error(acme_idp.send("PATCH", f"Users/{theirs['id']}", OKTA_DEACTIVATE), 404)
    assert_scim_error(acme_idp.send("DELETE", f"Users/{theirs['id']}"), 404)
    assert member_of(globex, "bob@globex-idp.test") is not None


# --- Okta's requests ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_okta_creates_finds_deactivates_reactivates_replaces_and_deletes_a_user(acme: World) -> None:
    idp = scim_for(acme)
    email = "test.user@okta.local"
    assert idp.users_named(email) == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0,
        "itemsPerPage": 0,
        "startIndex": 1,
        "Resources": [],
    }

    created = idp.send("POST", "Users", okta_user(email))
    assert created.status_code == 201, created.content
    user = created.json()
    assert created["Location"] == f"http://{acme.host}/scim/v2/Users/{user['id']}"
    assert user["userName"] == email and user["active"] is True and user["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert user["name"]["givenName"] == "Test" and user["emails"][0]["value"] == email
    account = User.objects.get(email=email)
    assert not account.has_usable_password()  # Okta's password is not the account's
    assert member_of(acme, email).role == "member"

    found = idp.users_named(email.upper())  # userName is case-insensitive
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user["id"]
    assert_scim_error(idp.send("POST", "Users", okta_user(email)), 409)

    deactivated = idp.send("PATCH", f"Users/{user['id']}", OKTA_DEACTIVATE)
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    assert member_of(acme, email) is None
    assert User.objects.get(pk=account.pk).is_active  # the account is global: it stays

    reactivated = idp.send("PATCH", f"Users/{user['id']}", OKTA_REACTIVATE)
    assert reactivated.json()["active"] is True and member_of(acme, email).role == "member"

    replaced = idp.send(
        "PUT",
        f"Users/{user['id']}",
        okta_user(email, id=user["id"], name={"givenName": "Another", "familyName": "Name"}, active=False),
    )
    assert replaced.status_code == 200 and replaced.json()["name"]["givenName"] == "Another"
    assert replaced.json()["active"] is False and member_of(acme, email) is None
    assert User.objects.get(pk=account.pk).full_name == "Test User"  # never written after it was made

    assert idp.send("DELETE", f"Users/{user['id']}").status_code == 204
    assert_scim_error(idp.get(f"Users/{user['id']}"), 404)
    assert idp.users_named(email)["totalResults"] == 0
    assert member_of(acme, email) is None


@pytest.mark.django_db
def test_okta_group_push_grants_and_takes_the_admin_role(acme: World) -> None:
    idp = scim_for(acme)
    user_id = idp.send("POST", "Users", okta_user("grace@okta.local")).json()["id"]
    group = idp.send(
        "POST", "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Admins", "members": [{"value": user_id}]}
    )
    assert group.status_code == 201, group.content
    group_id = group.json()["id"]
    assert member_of(acme, "grace@okta.local").role == "admin"
    assert idp.get(f"Users/{user_id}").json()["groups"][0]["display"] == "Admins"

    removed = idp.send(
        "PATCH",
        f"Groups/{group_id}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}]},
    )
    assert removed.status_code == 200 and removed.json()["members"] == []
    assert member_of(acme, "grace@okta.local").role == "member"

    added = idp.send(
        "PATCH",
        f"Groups/{group_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": user_id, "display": "grace@okta.local"}]}
            ],
        },
    )
    assert added.status_code == 200 and member_of(acme, "grace@okta.local").role == "admin"

    renamed = idp.send(
        "PATCH",
        f"Groups/{group_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "value": {"id": group_id, "displayName": "Engineers"}}],
        },
    )
    assert renamed.json()["displayName"] == "Engineers" and member_of(acme, "grace@okta.local").role == "member"

    listed = idp.get(f"Groups?{eq('displayName', 'Engineers')}").json()
    assert [g["id"] for g in listed["Resources"]] == [group_id]
    assert idp.send("DELETE", f"Groups/{group_id}").status_code == 204
    assert_scim_error(idp.get(f"Groups/{group_id}"), 404)


# --- Microsoft Entra's requests ------------------------------------------------------------------


@pytest.mark.django_db
def test_entra_creates_finds_updates_deactivates_reactivates_and_deletes_a_user(acme: World) -> None:
    idp = scim_for(acme)
    email = "Test_User_ab6490ee@contoso.com"

    created = idp.send("POST", "Users", entra_user(email))
    assert created.status_code == 201, created.content
    user_id = created.json()["id"]
    assert idp.users_named(email)["Resources"][0]["id"] == user_id
    by_external_id = idp.get(f"Users?{eq('externalId', '0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef')}").json()
    assert by_external_id["totalResults"] == 1

    updated = idp.send(
        "PATCH",
        f"Users/{user_id}",
        {
            "schemas": [PATCH_OP],
            "Operations": [
                {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@contoso.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
                {
                    "op": "Add",
                    "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                    "value": "Sales",
                },
            ],
        },
    )
    assert updated.status_code == 200, updated.content
    assert updated.json()["emails"][0]["value"] == "updatedemail@contoso.com"
    assert updated.json()["name"]["familyName"] == "updatedFamilyName"

    deactivated = idp.send("PATCH", f"Users/{user_id}", ENTRA_DEACTIVATE)
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False
    assert member_of(acme, email.lower()) is None

    assert idp.send("PATCH", f"Users/{user_id}", ENTRA_REACTIVATE).json()["active"] is True
    assert member_of(acme, email.lower()) is not None

    assert idp.send("DELETE", f"Users/{user_id}").status_code == 204
    assert member_of(acme, email.lower()) is None
    assert idp.users_named(email)["totalResults"] == 0


@pytest.mark.django_db
def test_entra_group_membership_changes_roles(acme: World) -> None:
    idp = scim_for(acme)
    user_id = idp.send("POST", "Users", entra_user("ada@contoso.com")).json()["id"]
    group_id = idp.send("POST", "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "admins"}).json()["id"]

    def members(op: str) -> Any:
        operations = [{"op": op, "path": "members", "value": [{"value": user_id}]}]
        return idp.send("PATCH", f"Groups/{group_id}", {"schemas": [PATCH_OP], "Operations": operations})

    assert members("Add").status_code == 200 and member_of(acme, "ada@contoso.com").role == "admin"
    assert members("Remove").status_code == 200 and member_of(acme, "ada@contoso.com").role == "member"


# --- People who already have an account ------------------------------------------------------------


@pytest.mark.django_db
def test_an_existing_account_is_linked_and_deprovisioning_leaves_its_other_tenants(acme: World, globex: World) -> None:
    idp = scim_for(acme)
    person = globex.member  # already a member of globex, not of acme
    name_before, password_before = person.full_name, person.password

    user_id = idp.send("POST", "Users", okta_user(person.email, displayName="Renamed By Acme")).json()["id"]
    assert member_of(acme, person.email) is not None
    idp.send("PATCH", f"Users/{user_id}", OKTA_DEACTIVATE)

    person.refresh_from_db()
    assert (person.full_name, person.password) == (name_before, password_before)
    assert member_of(acme, person.email) is None
    assert member_of(globex, person.email) is not None
    assert globex.client(globex.member_token).get("/api/documents/").status_code == 200


@pytest.mark.django_db
def test_groups_never_change_an_owner_and_the_last_owner_cannot_be_deprovisioned(acme: World) -> None:
    idp = scim_for(acme)
    owner_id = idp.send("POST", "Users", okta_user(acme.owner.email)).json()["id"]
    idp.send("POST", "Groups", {"schemas": [GROUP_SCHEMA], "displayName": "Members", "members": [{"value": owner_id}]})
    assert member_of(acme, acme.owner.email).role == "owner"

    refused = idp.send("PATCH", f"Users/{owner_id}", OKTA_DEACTIVATE)

    assert_scim_error(refused, 400)
    assert member_of(acme, acme.owner.email).role == "owner"
    assert idp.get(f"Users/{owner_id}").json()["active"] is True


@pytest.mark.django_db
def test_provisioning_and_the_token_are_in_the_audit_log(acme: World) -> None:
    owner = acme.client(acme.owner_token)
    idp = Scim(acme.host, owner.post("/api/sso/scim-token/").json()["token"])
    user_id = idp.send("POST", "Users", okta_user("audited@okta.local")).json()["id"]
    idp.send("PATCH", f"Users/{user_id}", OKTA_DEACTIVATE)
    owner.delete("/api/sso/scim-token/")

    entries = AuditEntry.objects.filter(tenant_id=acme.tenant.pk).order_by("id")
    seen = [(e.action, e.actor_label, e.target) for e in entries]

    assert seen[-4:] == [
        ("scim.changed", acme.owner.email, "SCIM token"),
        ("scim.user_provisioned", "Identity provider (SCIM)", "audited@okta.local"),
        ("scim.user_deprovisioned", "Identity provider (SCIM)", "audited@okta.local"),
        ("scim.changed", acme.owner.email, "SCIM token"),
    ]
    assert entries.last().changes["token"][1] is None


# --- Malformed requests ----------------------------------------------------------------------------


MALFORMED_USER_CREATES = {
    "not JSON": b"{userName: nope",
    "not UTF-8": b'{"userName": "\xff\xfe"}',
    "a JSON array": b'[{"userName": "a@b.test"}]',
    "no userName": json.dumps({"schemas": [USER_SCHEMA], "emails": [{"value": "a@b.test"}]}).encode(),
    "userName not a string": json.dumps({"userName": 42}).encode(),
    "emails not a list": json.dumps({"userName": "a@b.test", "emails": "a@b.test"}).encode(),
    "an e-mail that is not one": json.dumps({"userName": "a@b.test", "emails": [{"value": "nope"}]}).encode(),
    "no e-mail anywhere": json.dumps({"userName": "not-an-address"}).encode(),
    "name not an object": json.dumps({"userName": "a@b.test", "name": "Ann"}).encode(),
    "active not a boolean": json.dumps({"userName": "a@b.test", "active": "maybe"}).encode(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("body", MALFORMED_USER_CREATES.values(), ids=MALFORMED_USER_CREATES.keys())
def test_a_malformed_user_is_a_scim_400(acme: World, body: bytes) -> None:
    assert_scim_error(scim_for(acme).send("POST", "Users", raw=body), 400)


MALFORMED_PATCHES = {
    "no Operations": {"schemas": [PATCH_OP]},
    "Operations not a list": {"schemas": [PATCH_OP], "Operations": {"op": "replace"}},
    "an operation not an object": {"schemas": [PATCH_OP], "Operations": ["replace"]},
    "an unknown op": {"schemas": [PATCH_OP], "Operations": [{"op": "merge", "value": {"active": False}}]},
    "active not a boolean": {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "No"}]},
    "remove without a path": {"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]},
    "no path and a bare value": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": False}]},
    "a path that is not a string": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": 1, "value": 2}]},
    "an empty userName": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": ""}]},
}


@pytest.mark.django_db
@pytest.mark.parametrize("body", MALFORMED_PATCHES.values(), ids=MALFORMED_PATCHES.keys())
def test_a_malformed_patch_is_a_scim_400_and_changes_nothing(acme: World, body: dict[str, Any]) -> None:
    idp = scim_for(acme)
    user_id = idp.send("POST", "Users", okta_user("pat@okta.local")).json()["id"]

    assert_scim_error(idp.send("PATCH", f"Users/{user_id}", body), 400)
    assert idp.get(f"Users/{user_id}").json()["active"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["filter=userName%20eq", "filter=userName%20eq%20%22a%22%20and", "startIndex=0", "count=x", "count=-1"],
)
def test_a_malformed_list_query_is_a_scim_400(acme: World, query: str) -> None:
    assert_scim_error(scim_for(acme).get(f"Users?{query}"), 400)


@pytest.mark.django_db
def test_a_malformed_group_is_a_scim_400(acme: World, globex: World) -> None:
    idp = scim_for(acme)
    globex_user = scim_for(globex).send("POST", "Users", okta_user("eve@globex-idp.test")).json()["id"]

    assert_scim_error(idp.send("POST", "Groups", {"displayName": ""}), 400)
    assert_scim_error(idp.send("POST", "Groups", {"displayName": "Admins", "members": "everyone"}), 400)
    # Another tenant's user does not exist here.
    assert_scim_error(idp.send("POST", "Groups", {"displayName": "Admins", "members": [{"value": globex_user}]}), 400)


@pytest.mark.django_db
def test_service_provider_config_resource_types_and_schemas_are_served(acme: World) -> None:
    idp = scim_for(acme)

    config = idp.get("ServiceProviderConfig").json()
    types = idp.get("ResourceTypes").json()
    schemas = idp.get("Schemas").json()

    assert config["patch"]["supported"] is True and config["changePassword"]["supported"] is False
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    assert USER_SCHEMA in {s["id"] for s in schemas["Resources"]}
    assert_scim_error(Scim(acme.host, None).get("ServiceProviderConfig"), 401)


@pytest.mark.django_db
def test_users_are_paged_with_start_index_and_count(acme: World) -> None:
    idp = scim_for(acme)
    for n in range(3):
        idp.send("POST", "Users", okta_user(f"p{n}@okta.local"))

    page = idp.get("Users?startIndex=2&count=1").json()

    assert page["totalResults"] == 3 and page["startIndex"] == 2 and page["itemsPerPage"] == 1


@pytest.mark.django_db
def test_listing_users_and_groups_takes_the_same_queries_for_more_of_them(acme: World) -> None:
    idp = scim_for(acme)

    def listed() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert idp.get("Users").status_code == idp.get("Groups").status_code == 200
        return len(queries)

    def provision(n: int) -> None:
        user_id = idp.send("POST", "Users", okta_user(f"q{n}@okta.local")).json()["id"]
        idp.send("POST", "Groups", {"displayName": f"Team {n}", "members": [{"value": user_id}]})

    provision(0)
    one = listed()
    for n in range(1, 4):
        provision(n)

    assert listed() == one


# --- Deprovisioning reaches everything, over a real server ---------------------------------------


def _provisioned_world() -> tuple[World, str, str, str]:
    """A committed tenant whose member was provisioned by SCIM, with a session on its host and an
    API key they made: (world, SCIM token, session cookie, API key)."""
    world = world_create("Scimmed")
    token = scim_token_create(tenant=world.tenant, created_by=world.owner).raw
    _, api_key = api_key_create(tenant=world.tenant, created_by=world.member, name="theirs", scope="write")
    cookie = world.session_client(world.member).cookies[settings.SESSION_COOKIE_NAME].value
    return world, token, cookie, api_key


def _their_sessions(world: World) -> int:
    with tenant_context(world.tenant):
        return sum(
            1 for session in Session.objects.all() if session.get_decoded().get("_auth_user_id") == str(world.member.pk)
        )


def _key_revoked(world: World) -> bool:
    return ApiKey.objects.get(tenant=world.tenant, created_by=world.member).revoked is not None


@pytest.mark.asyncio
@pytest.mark.django_db
@pytest.mark.parametrize("idp", ["okta", "entra"])
async def test_deprovisioning_ends_a_session_a_token_a_key_and_a_socket_within_60_seconds(
    live_worlds: Any, asgi_server: Any, idp: str
) -> None:
    world, token, cookie, api_key = await database_sync_to_async(_provisioned_world)()
    host = {"Host": f"{world.tenant.subdomain}.localhost:{asgi_server.port}"}
    scim_headers = {"Authorization": f"Bearer {token}", "Content-Type": SCIM}
    body = okta_user(world.member.email) if idp == "okta" else entra_user(world.member.email)
    deactivate = OKTA_DEACTIVATE if idp == "okta" else ENTRA_DEACTIVATE
    reactivate = OKTA_REACTIVATE if idp == "okta" else ENTRA_REACTIVATE

    async with httpx.AsyncClient(base_url=asgi_server.url, headers=host, timeout=20, trust_env=False) as http:
        as_session = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}"}
        as_token = {"Authorization": f"Token {world.member_token}"}
        as_key = {"Authorization": f"Bearer {api_key}"}
        for credential in (as_session, as_token, as_key):
            assert (await http.get("/api/documents/", headers=credential)).status_code == 200

        created = await http.post("/scim/v2/Users", content=json.dumps(body), headers=scim_headers)
        assert created.status_code == 201, created.text  # links the existing member
        user_id = created.json()["id"]

        async with websockets.connect(
            f"ws://{world.tenant.subdomain}.localhost:{asgi_server.port}/ws/chat/",
            additional_headers=as_token,
            host="127.0.0.1",
            port=asgi_server.port,
            proxy=None,
        ) as socket:
            started = asyncio.get_running_loop().time()
            patched = await http.patch(
                f"/scim/v2/Users/{user_id}", content=json.dumps(deactivate), headers=scim_headers
            )
            assert patched.status_code == 200 and patched.json()["active"] is False
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await receive(socket, timeout=60)  # without sending anything
            assert asyncio.get_running_loop().time() - started < 60
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403

        assert (await http.get("/api/documents/", headers=as_session)).status_code in (401, 403)
        assert (await http.get("/api/documents/", headers=as_token)).status_code == 403
        assert (await http.get("/api/documents/", headers=as_key)).status_code == 401
        assert await database_sync_to_async(_their_sessions)(world) == 0
        assert await database_sync_to_async(_key_revoked)(world)
        # Their other organisations are not this tenant's business: the account is untouched.
        assert (await database_sync_to_async(User.objects.get)(pk=world.member.pk)).is_active

        restored = await http.patch(f"/scim/v2/Users/{user_id}", content=json.dumps(reactivate), headers=scim_headers)
        assert restored.status_code == 200 and restored.json()["active"] is True
        assert (await http.get("/api/documents/", headers=as_token)).status_code == 200
        assert (await http.get("/api/documents/", headers=as_key)).status_code == 401  # keys stay revoked
