"""Text PostgreSQL cannot store (NUL, lone surrogates) is refused with a 400 or a form error, never a 500."""

from __future__ import annotations

import json

import pytest
from django_tenants.utils import tenant_context

from ai.models import Document
from tests.factories import PASSWORD

NUL = "before\x00after"
# As a JSON client sends it: the escape decodes to a lone surrogate, which UTF-8 cannot encode.
SURROGATE_JSON = '"before\\ud800after"'


def post_json(client, path: str, body: str):
    return client.post(path, body, content_type="application/json")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/documents/", {"title": NUL, "content": "Fine text."}, "title"),
        ("/api/documents/", {"title": "Fine", "content": NUL}, "content"),
        ("/api/conversations/", {"title": NUL}, "title"),
        ("/api/search/", {"query": NUL}, "query"),
    ],
)
def test_a_nul_in_an_api_text_field_is_a_400_naming_the_field(acme, path, body, field):
    response = acme.client(acme.member_token).post(path, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["fields"][field][0] == "Text may not contain the character U+0000."


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/documents/", '{"title": %s, "content": "Fine text."}'),
        ("/api/conversations/", '{"title": %s}'),
        ("/api/search/", '{"query": %s}'),
    ],
)
def test_a_lone_surrogate_in_an_api_text_field_is_a_400(acme, path, template):
    before = _documents(acme)

    response = post_json(acme.client(acme.member_token), path, template % SURROGATE_JSON)

    assert response.status_code == 400, response.content
    assert "U+D800" in json.dumps(response.json())
    assert _documents(acme) == before


@pytest.mark.parametrize("query", [NUL, "\x1b\x00Uy\u00cfH"])  # the second, schemathesis's find
def test_a_nul_in_the_conversation_search_query_is_a_400_naming_the_parameter(acme, query):
    response = acme.client(acme.member_token).get("/api/conversations/", {"q": query, "page": "2"})

    assert response.status_code == 400, response.content
    assert response.json()["error"]["fields"]["q"][0] == "Text may not contain the character U+0000."


def test_signup_refuses_a_nul_in_the_organisation_name(public_client):
    response = public_client.post(
        "/api/signup/",
        {"organisation": NUL, "subdomain": "nulcorp", "email": "a@nul.test", "password": PASSWORD},
        format="json",
    )

    assert response.status_code == 400
    assert "organisation" in response.json()["error"]["fields"]


# Pages' forms (the log-in page and the admin's included) are tests/core/test_hostile_input.py's.


def _documents(world) -> int:  # noqa: ANN001
    with tenant_context(world.tenant):
        return Document.objects.count()
