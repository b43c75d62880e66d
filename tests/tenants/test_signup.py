import threading

import pytest
from django.db import connection
from django_tenants.utils import schema_exists, tenant_context

from ai.models import Document
from core.models import User
from tenants.models import Domain, Membership, Tenant
from tests.conftest import host_client
from tests.factories import PASSWORD, UserFactory


def signup_payload(subdomain: str, **overrides: str) -> dict[str, str]:
    payload = {
        "organisation": "Initech",
        "subdomain": subdomain,
        "email": f"boss@{subdomain}.test",
        "password": PASSWORD,
        "plan": "free",
    }
    payload.update(overrides)
    return payload


def test_signup_creates_a_working_tenant(public_client, unique_subdomain):
    response = public_client.post("/api/signup/", signup_payload(unique_subdomain), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tenant"] == {
        "name": "Initech",
        "subdomain": unique_subdomain,
        "url": f"http://{unique_subdomain}.localhost:8000/",
        "status": "active",
    }
    assert body["user"]["email"] == f"boss@{unique_subdomain}.test"
    assert body["checkout_url"] is None
    tenant = Tenant.objects.get(subdomain=unique_subdomain)
    assert schema_exists(tenant.schema_name)
    assert Domain.objects.get(tenant=tenant).domain == f"{unique_subdomain}.localhost"
    assert Membership.objects.get(tenant=tenant).role == "owner"

    client = host_client(f"{unique_subdomain}.localhost", body["token"])
    created = client.post("/api/documents/", {"title": "Hello", "content": "World"}, format="json")
    assert created.status_code == 201
    assert client.get("/api/documents/").json()["count"] == 1
    with tenant_context(tenant):
        assert Document.objects.count() == 1


@pytest.mark.parametrize(
    "subdomain",
    ["ab", "-abc", "abc-", "a_b_c", "a" * 41, "über", "abc.def", "a b c", "", "xn--abc"],
)
def test_signup_rejects_invalid_subdomains(public_client, subdomain):
    response = public_client.post("/api/signup/", {**signup_payload("x"), "subdomain": subdomain}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert "subdomain" in error["fields"]
    assert error["message"]


@pytest.mark.parametrize("subdomain", ["www", "admin", "api", "app", "static", "media", "public", "mail"])
def test_signup_refuses_reserved_subdomains(public_client, subdomain):
    response = public_client.post("/api/signup/", signup_payload(subdomain), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "reserved_subdomain"
    assert "reserved" in response.json()["error"]["message"]


def test_signup_refuses_a_taken_subdomain(public_client, acme):
    response = public_client.post("/api/signup/", signup_payload("acme"), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "subdomain_taken"
    assert not User.objects.filter(email="boss@acme.test").exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"plan": "platinum"}, "plan"),
        ({"organisation": ""}, "organisation"),
    ],
)
def test_signup_validation_errors_name_the_field(public_client, unique_subdomain, overrides, field):
    response = public_client.post("/api/signup/", signup_payload(unique_subdomain, **overrides), format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not Tenant.objects.filter(subdomain=unique_subdomain).exists()


def test_signup_with_missing_fields_is_a_400(public_client):
    response = public_client.post("/api/signup/", {}, format="json")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) >= {"organisation", "subdomain", "email", "password"}


def test_existing_account_needs_its_password_to_start_another_organisation(public_client, acme, unique_subdomain):
    wrong = public_client.post(
        "/api/signup/",
        signup_payload(unique_subdomain, email=acme.owner.email, password="Another-passw0rd!"),
        format="json",
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "email_taken"

    right = public_client.post("/api/signup/", signup_payload(unique_subdomain, email=acme.owner.email), format="json")
    assert right.status_code == 201
    assert acme.owner.memberships.count() == 2


def test_a_taken_subdomain_answers_the_same_whatever_the_account_and_password(public_client, acme):
    answers = [
        public_client.post("/api/signup/", signup_payload("acme", email=email, password=password), format="json")
        for email, password in (
            (acme.owner.email, PASSWORD),  # the right password
            (acme.owner.email, "Another-passw0rd!"),  # a wrong one
            ("nobody-yet@example.com", "Another-passw0rd!"),  # no account at all
        )
    ]

    assert [answer.status_code for answer in answers] == [400] * 3
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["error"]["code"] == "subdomain_taken"


def test_password_guesses_through_signup_count_towards_the_login_lockout(public_client, settings, unique_subdomain):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = UserFactory(email="guessed@example.com")

    def signup(n, password):
        payload = signup_payload(f"{unique_subdomain}-{n}", email=user.email, password=password)
        return public_client.post("/api/signup/", payload, format="json", REMOTE_ADDR=f"10.0.2.{n}")

    guesses = [signup(n, f"Guess-number-{n}!").status_code for n in range(settings.AXES_FAILURE_LIMIT)]
    right = signup(99, PASSWORD)

    assert guesses[: settings.AXES_FAILURE_LIMIT - 1] == [400] * (settings.AXES_FAILURE_LIMIT - 1)
    assert right.status_code == 429
    assert int(right["Retry-After"]) > 0
    assert not Tenant.objects.filter(subdomain__startswith=unique_subdomain).exists()


def test_signup_is_only_on_the_public_host(acme, unique_subdomain):
    response = acme.client().post("/api/signup/", signup_payload(unique_subdomain), format="json")

    assert response.status_code == 404


def _race(payloads: list[dict[str, str]]) -> list[int]:
    barrier = threading.Barrier(len(payloads))
    statuses: list[int] = []

    def attempt(payload: dict[str, str]) -> None:
        client = host_client("localhost")
        barrier.wait()
        try:
            statuses.append(client.post("/api/signup/", payload, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_concurrent_signups_for_one_subdomain_make_exactly_one_tenant(committed_tenants, unique_subdomain):
    committed_tenants.append(unique_subdomain)
    payloads = [signup_payload(unique_subdomain, email=f"racer{i}@race-{unique_subdomain}.test") for i in range(2)]

    statuses = _race(payloads)

    assert sorted(statuses) == [201, 400]
    tenant = Tenant.objects.get(subdomain=unique_subdomain)
    owners = list(Membership.objects.filter(tenant=tenant).values_list("user__email", flat=True))
    assert len(owners) == 1
    losers = {p["email"] for p in payloads} - set(owners)
    assert not User.objects.filter(email__in=losers).exists(), "the loser left an account behind"
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", [f"t_{unique_subdomain}%"])
        assert [row[0] for row in cursor.fetchall()] == [tenant.schema_name]


def test_concurrent_signups_for_different_subdomains_all_succeed(committed_tenants, unique_subdomain):
    subdomains = [f"{unique_subdomain}-{i}" for i in range(4)]
    committed_tenants.extend(subdomains)

    statuses = _race([signup_payload(s, email=f"boss@race-{s}.test") for s in subdomains])

    assert statuses == [201] * 4
    for subdomain in subdomains:
        assert schema_exists(f"t_{subdomain.replace('-', '_')}")
