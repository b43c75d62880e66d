import os

from tests.conftest import host_client


def test_liveness_answers_without_the_database(public_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = host_client("nobody.localhost").get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_reports_the_database_and_the_embedding_model(public_client):
    response = public_client.get("/readyz")

    body = response.json()
    assert body["database"]["ok"] is True
    assert body["database"]["pgvector"].startswith("0.8")
    assert body["embeddings"]["backend"] == "local"
    assert response.status_code == (200 if body["embeddings"]["ready"] else 503)


def test_static_files_and_the_favicon_need_no_tenant_lookup(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        favicon = host_client("nobody.localhost").get("/favicon.ico")
        css = host_client("acme.localhost").get("/static/core/strata.css")

    assert favicon.status_code == 200
    assert css.status_code == 200


def test_an_unknown_host_is_a_json_404_for_the_api(db):
    response = host_client("nobody.localhost").get("/api/documents/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_tenant"


def test_an_unknown_host_is_an_html_404_for_browsers(db):
    response = host_client("nobody.localhost").get("/", HTTP_ACCEPT="text/html")

    assert response.status_code == 404
    assert b"No organisation lives at this address" in response.content


def test_a_missing_api_route_is_a_json_404(acme):
    response = acme.client(acme.owner_token).get("/api/nothing-here/")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_gets_the_error_shape(public_client):
    response = public_client.get("/api/signup/")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_malformed_json_is_a_400(public_client):
    response = public_client.post("/api/signup/", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_plans_are_listed_on_the_public_host(public_client, settings):
    settings.DEBUG = True  # without Stripe, paid plans are offered only in a local demo
    plans = public_client.get("/api/plans/").json()

    assert [plan["slug"] for plan in plans] == ["free", "pro", "enterprise"]
    assert plans[1]["monthly_price"] == "49.00"
    assert plans[0]["included_tokens"] > 0


def test_the_openapi_schema_is_served(acme):
    response = acme.client().get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert "/api/documents/" in response.json()["paths"]


def test_error_pages_are_readable_pages_not_debug_pages(acme):
    from config.settings import base

    if "DEBUG" not in os.environ:
        assert base.DEBUG is False  # Django's debug pages only when DEBUG is explicitly on
    page = acme.session_client(acme.member).get("/no-such-page/")

    assert page.status_code == 404
    body = page.content.decode()
    assert "This page does not exist" in body and "Go to the start page" in body
    assert "Traceback" not in body and "URLconf" not in body


def test_a_form_with_an_expired_csrf_token_gets_a_readable_page(acme):
    from django.test import Client

    client = Client(enforce_csrf_checks=True, HTTP_HOST=acme.host)
    response = client.post("/login/", {"username": "x", "password": "y"})

    assert response.status_code == 403
    assert "Please reload and try again" in response.content.decode()
