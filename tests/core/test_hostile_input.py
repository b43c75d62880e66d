"""Hostile input always gets a 4xx, never a 500: JSON nested thousands deep on every JSON endpoint
(found in the OpenAPI schemas), integers too long or not ASCII, and NUL in every page's form."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django_tenants.utils import tenant_context
from rest_framework.views import APIView

from ai.models import Conversation, Document
from core.platform.json import MAX_JSON_DEPTH, JSONTooDeep, json_loads
from core.platform.validators import ascii_integer
from tenants.models import ApiKey, Invitation, Membership
from tests.conftest import host_client
from tests.factories import PASSWORD
from tests.fakes.stripe.webhooks import sign_webhook

WEBHOOK_SECRET = "whsec_hostile"
NUL = "before\x00after"
HUGE = "9" * 4301  # one digit past Python's int() limit


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- JSON nested too deep ------------------------------------------------------------------------


def test_json_nested_as_deep_as_allowed_is_parsed():
    assert json_loads(nested(MAX_JSON_DEPTH)) is not None
    assert json_loads('{"a": ' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH) is not None


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 100_000])
def test_json_nested_deeper_is_a_value_error_not_a_recursion_error(depth):
    with pytest.raises(JSONTooDeep):
        json_loads(nested(depth))
    with pytest.raises(ValueError, match="at most"):
        json_loads(b'{"a": ' * depth + b"1" + b"}" * depth)


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"text": "[" * 10_000 + '\\"{' * 1000, "list": [["ok"]]})

    assert json_loads(text)["list"] == [["ok"]]


def schema_operations(client) -> list[tuple[str, str]]:  # noqa: ANN001
    """(method, path) of every operation whose request body may be JSON, from the host's own schema."""
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return [
        (method, path)
        for path, operations in json.loads(response.content)["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


def fill_path(path: str, ids: dict[str, int]) -> str:
    """The operation's path with each parameter an object the caller may change (found by the
    path's first segment); a new kind of path fails here until it is named below."""
    resource = path.split("/")[2]
    return re.sub(r"\{[^}]+\}", lambda _: str(ids[resource]), path)


def send_deep_json(client, method: str, path: str, depth: int):  # noqa: ANN001
    body = nested(depth)
    return getattr(client, method)(
        path, body, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign_webhook(body, WEBHOOK_SECRET)
    )


def refused_as_malformed(response) -> bool:  # noqa: ANN001
    if response.status_code != 400:
        return False
    error = response.json()["error"]
    return isinstance(error["code"], str) and "JSON" in error["message"]


@pytest.fixture
def owned_ids(acme) -> dict[str, int]:
    """An object of each kind that the acme owner may change through the API."""
    client = acme.client(acme.owner_token)
    document = client.post("/api/documents/", {"title": "Deep", "content": "Some text."}, format="json")
    conversation = client.post("/api/conversations/", {"title": "Deep"}, format="json")
    collection = client.post("/api/collections/", {"name": "Deep"}, format="json")
    with tenant_context(acme.tenant):
        member = Membership.objects.get(user=acme.member, tenant=acme.tenant)
    return {
        "documents": document.json()["id"],
        "conversations": conversation.json()["id"],
        "members": member.pk,
        "collections": collection.json()["id"],
    }


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_json_nested_thousands_deep_is_a_400_on_every_tenant_json_endpoint(acme, owned_ids, settings, depth):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    client = acme.client(acme.owner_token)
    client.raise_request_exception = False  # a 500 is an answer to list below, not an error here
    operations = schema_operations(client)
    assert len(operations) >= 12  # login ... search: the schema really was read

    answers = {
        (method, path): send_deep_json(client, method, fill_path(path, owned_ids), depth) for method, path in operations
    }

    wrong = {op: (r.status_code, r.content[:200]) for op, r in answers.items() if not refused_as_malformed(r)}
    assert wrong == {}


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_json_nested_thousands_deep_is_a_400_on_every_public_json_endpoint(acme, settings, depth):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    client = host_client("localhost", acme.owner_token)
    client.raise_request_exception = False
    operations = schema_operations(client)
    assert ("post", "/api/billing/webhook/") in operations and ("post", "/api/signup/") in operations

    answers = {(method, path): send_deep_json(client, method, path, depth) for method, path in operations}

    wrong = {op: (r.status_code, r.content[:200]) for op, r in answers.items() if not refused_as_malformed(r)}
    assert wrong == {}


def test_a_signed_webhook_nested_thousands_deep_is_an_invalid_payload(public_client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    body = '{"id": "evt_deep", "data": ' + nested(50_000) + "}"

    response = public_client.post(
        "/api/billing/webhook/",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_webhook(body, WEBHOOK_SECRET),
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payload"


# --- Integers from URLs and forms ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["12", "0"])
def test_ascii_integer_reads_plain_numbers(value):
    assert ascii_integer(value) == int(value)


@pytest.mark.parametrize("value", [None, "", "²", "\u0663", "-1", "+1", " 1", "1.0", "1e3", "9" * 19, HUGE])
def test_ascii_integer_refuses_what_is_not_a_bigint_in_ascii_digits(value):
    assert ascii_integer(value) is None


@pytest.mark.parametrize(
    "headers", [{"HTTP_LAST_EVENT_ID": HUGE}, {"QUERY_STRING": f"after={HUGE}"}, {"QUERY_STRING": "after=²"}]
)
def test_a_huge_or_non_ascii_resume_point_is_a_400_before_the_answer_is_looked_up(acme, headers):
    response = acme.client(acme.member_token).get("/api/chat/999999/stream/", **headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("passage", ["²", HUGE, "9" * 30])
def test_a_passage_that_is_no_id_is_ignored_on_the_document_page(acme, passage):
    with tenant_context(acme.tenant):
        document = Document.objects.create(title="Plain", content="Some text.", created_by=acme.member)

    response = acme.session_client(acme.member).get(f"/documents/{document.pk}/", {"passage": passage})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/members/", "resend"),
        ("/members/", "revoke"),
        ("/members/", "role"),
        ("/members/", "remove"),
        ("/keys/", "revoke"),
    ],
)
@pytest.mark.parametrize("value", ["²", HUGE, "9" * 30])
def test_an_id_that_is_no_bigint_in_a_page_form_is_refused(acme, path, action, value):
    response = acme.session_client(acme.owner).post(path, {"action": action, "id": value, "role": "member"})

    assert response.status_code in (302, 400)  # the page's own message, or a 400 page
    assert response.status_code != 500


# --- NUL in every page's form ----------------------------------------------------------------------


def _conversation(world) -> int:  # noqa: ANN001
    with tenant_context(world.tenant):
        return Conversation.objects.create(user=world.member, title="Fine").pk


def _rows(world) -> dict[str, Any]:  # noqa: ANN001
    with tenant_context(world.tenant):
        return {
            "documents": Document.objects.count(),
            "conversation titles": sorted(Conversation.objects.values_list("title", flat=True)),
            "keys": ApiKey.objects.filter(tenant=world.tenant).count(),
            "invitations": Invitation.objects.filter(tenant=world.tenant).count(),
        }


# (who posts, path, fields): the forms of the pages, with a NUL where each takes text.
TENANT_FORMS = [
    ("member", "/documents/upload/", {"title": NUL, "content": "Fine text."}),
    ("member", "/documents/upload/", {"title": "Fine", "content": NUL}),
    ("member", "/chat/{conversation}/rename/", {"title": NUL}),
    ("member", "/account/", {"action": "name", "full_name": NUL}),
    ("member", "/account/", {"action": "email", "email": f"a{NUL}@acme.test"}),
    ("member", "/account/", {"action": "password", "old_password": NUL, "new_password1": NUL}),
    ("owner", "/keys/", {"name": NUL, "scope": "read"}),
    ("owner", "/members/", {"action": "invite", "email": f"a{NUL}@acme.test", "role": "member"}),
    ("owner", "/members/", {"action": "role", "id": "1", "role": NUL}),
    ("owner", "/billing/plan/", {"plan": NUL}),
    ("owner", "/billing/portal/", {"flow": NUL}),
    (None, "/login/", {"username": NUL, "password": PASSWORD}),
    (None, "/password-reset/", {"email": f"a{NUL}@acme.test"}),
    (None, "/invite/some-token/", {"email": NUL, "password": NUL}),
    ("owner", "/admin/ai/prompttemplate/add/", {"name": "chat", "version": 9, "system_prompt": NUL}),
]


@pytest.mark.parametrize(("who", "path", "fields"), TENANT_FORMS)
def test_a_nul_in_a_tenant_page_form_is_a_400_and_nothing_is_stored(acme, who, path, fields):
    client = acme.session_client(getattr(acme, who)) if who else acme.client()
    path = path.format(conversation=_conversation(acme))
    before = _rows(acme)

    response = client.post(path, fields)

    assert response.status_code == 400, response.content[:300]
    assert b"could not be understood" in response.content  # the site's 400 page
    assert _rows(acme) == before


@pytest.mark.parametrize(("path", "fields"), [("/login/", {"email": NUL}), ("/password-reset/", {"email": NUL})])
def test_a_nul_in_a_public_page_form_is_a_400(public_client, path, fields):
    response = public_client.post(path, fields)

    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/?q={}", "/chat/?q={}", "/admin/ai/document/?q={}"])
def test_a_nul_in_a_page_query_is_a_400(acme, path):
    response = acme.session_client(acme.owner).get(path.format("%00"))

    assert response.status_code == 400


def test_the_api_still_names_the_field_holding_a_nul(acme):
    response = acme.client(acme.member_token).post("/api/documents/", {"title": NUL, "content": "Fine text."})

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["title"] == ["Text may not contain the character U+0000."]


def page_routes(urlconf: str) -> list[str]:
    """A concrete path for every page (not API) route of a URL conf, the admin's included."""

    def walk(patterns: list[Any], prefix: str) -> Any:
        for entry in patterns:
            route = getattr(entry.pattern, "_route", None)
            if route is None:  # a regex route (the admin's app index): its neighbours cover the admin
                continue
            route = re.sub(r"<(?:\w+:)?\w+>", "x", re.sub(r"<int:\w+>", "1", route))
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, prefix + route)
            elif isinstance(entry, URLPattern):
                view_class = getattr(entry.callback, "cls", None)
                if not (isinstance(view_class, type) and issubclass(view_class, APIView)):
                    yield "/" + prefix + route

    return sorted(set(walk(get_resolver(urlconf).url_patterns, "")))


@pytest.mark.parametrize(
    ("urlconf", "host"), [("config.urls_tenants", "acme.localhost"), ("config.urls_public", "localhost")]
)
def test_every_page_refuses_a_nul_in_any_posted_field(acme, urlconf, host):
    client = host_client(host)
    client.raise_request_exception = False
    with tenant_context(acme.tenant):
        client.force_login(acme.owner)
    routes = page_routes(urlconf)
    assert "/documents/upload/" in routes or "/signup/" in routes

    answers = {path: client.post(path, {"anything": NUL}).status_code for path in routes}

    assert {path: status for path, status in answers.items() if status != 400} == {}
