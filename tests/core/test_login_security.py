"""Login paths under attack: lockouts per address and per account on every path, a client address
that a forged X-Forwarded-For cannot change, and one answer for a wrong password and a non-member."""

from __future__ import annotations

import httpx
import pytest
from rest_framework.test import APIClient

from tests.conftest import host_client
from tests.factories import PASSWORD, UserFactory
from tests.hashers import FastAdmittedPBKDF2PasswordHasher

LIMIT = 10
WRONG = "wrong-password"


def api_login(host: str, email: str, password: str = WRONG, **extra):
    return host_client(host).post("/api/auth/login/", {"email": email, "password": password}, format="json", **extra)


def form_login(host: str, path: str, email: str, password: str = WRONG, **extra):
    return host_client(host).post(path, {"username": email, "password": password}, **extra)


LOGIN_PATHS = {
    "api": lambda world, email, password="wrong-password", **extra: api_login(world.host, email, password, **extra),
    "tenant-page": lambda world, email, password="wrong-password", **extra: form_login(
        world.host, "/login/", email, password, **extra
    ),
    "tenant-admin": lambda world, email, password="wrong-password", **extra: form_login(
        world.host, "/admin/login/", email, password, **extra
    ),
    "operator-admin": lambda world, email, password="wrong-password", **extra: form_login(
        "localhost", "/admin/login/", email, password, **extra
    ),
}


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser("ops@example.com", PASSWORD)


def account_for(path: str, acme, operator, new_member):
    # Each path's rightful user: a member on the tenant's pages and API, an owner in its admin,
    # a platform operator in the operator admin.
    if path == "operator-admin":
        return operator
    user, _ = new_member(acme, "owner" if path == "tenant-admin" else "member")
    return user


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_every_login_path_locks_an_account_after_repeated_failures_from_many_addresses(
    acme, operator, new_member, path
):
    attempt = LOGIN_PATHS[path]
    user = account_for(path, acme, operator, new_member)

    statuses = [attempt(acme, user.email, REMOTE_ADDR=f"10.0.0.{n}").status_code for n in range(LIMIT)]
    right_password = attempt(acme, user.email, PASSWORD, REMOTE_ADDR="10.0.1.1")

    assert 429 not in statuses[: LIMIT - 1]
    assert statuses[-1] == 429
    assert right_password.status_code == 429
    assert int(right_password["Retry-After"]) > 0


@pytest.mark.parametrize("path", LOGIN_PATHS)
def test_every_login_path_locks_an_address_that_tries_many_accounts(acme, path):
    attempt = LOGIN_PATHS[path]

    statuses = [attempt(acme, f"guess{n}@example.com").status_code for n in range(LIMIT)]

    assert statuses[-1] == 429
    assert attempt(acme, "someone-else@example.com").status_code == 429
    assert attempt(acme, "fresh@example.com", REMOTE_ADDR="10.9.9.9").status_code != 429


def test_the_api_lockout_is_json_and_the_pages_lockout_is_a_page(acme):
    for n in range(LIMIT):
        api_login(acme.host, f"guess{n}@example.com")

    api = api_login(acme.host, acme.member.email, PASSWORD)
    page = form_login(acme.host, "/login/", acme.member.email, PASSWORD)

    assert api.status_code == page.status_code == 429
    assert api.json()["error"]["code"] == "throttled"
    assert b"Too many failed logins" in page.content


@pytest.mark.parametrize("proxies", [0, 1])
def test_a_forged_x_forwarded_for_does_not_change_the_throttle_key(acme, settings, proxies):
    settings.TRUSTED_PROXY_COUNT = proxies
    # Behind one proxy the real client is the entry the proxy appended (the last); with none, the peer.
    forwarded = [f"203.0.113.{n}, 198.51.100.7" if proxies else f"203.0.113.{n}" for n in range(LIMIT + 1)]

    statuses = [
        api_login(acme.host, f"guess{n}@example.com", HTTP_X_FORWARDED_FOR=header).status_code
        for n, header in enumerate(forwarded)
    ]

    assert statuses[-1] == 429


def test_behind_a_trusted_proxy_each_real_client_has_its_own_key(acme, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    for n in range(LIMIT):
        api_login(acme.host, f"guess{n}@example.com", HTTP_X_FORWARDED_FOR="198.51.100.7")

    other_client = api_login(acme.host, acme.member.email, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.8")

    assert other_client.status_code == 200


def test_signup_throttle_keys_on_the_peer_not_a_forged_header(public_client):
    # The signup rate is 20 an hour per client address (config/settings/api.py).
    statuses = [
        public_client.post("/api/signup/", {}, format="json", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(21)
    ]

    assert statuses[:20] == [400] * 20
    assert statuses[20] == 429


def test_the_live_server_does_not_take_the_client_address_from_x_forwarded_for(live_worlds, asgi_server):
    acme = live_worlds["acme"]
    statuses = []
    with httpx.Client(base_url=asgi_server.url, headers={"Host": f"{acme.host}:{asgi_server.port}"}) as client:
        for n in range(LIMIT):
            response = client.post(
                "/api/auth/login/",
                json={"email": f"live-guess{n}@example.com", "password": "wrong-password"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            statuses.append(response.status_code)
    assert statuses[-1] == 429
    assert int(response.headers["Retry-After"]) > 0


# One answer for a wrong password and a non-member


@pytest.mark.parametrize("path", ["api", "tenant-page", "tenant-admin"])
def test_a_non_members_right_password_gets_the_wrong_password_answer(acme, globex, path):
    attempt = LOGIN_PATHS[path]
    outsider = globex.owner  # owner elsewhere: passes every role check but membership

    non_member = attempt(acme, outsider.email, PASSWORD)
    wrong_password = attempt(acme, acme.owner.email, "wrong-password")
    unknown = attempt(acme, "nobody@example.com", "wrong-password")

    assert non_member.status_code == wrong_password.status_code == unknown.status_code
    if path == "api":
        assert non_member.json() == wrong_password.json() == unknown.json()
    else:
        errors = [
            r.context["form"].errors.as_data()["__all__"][0].message for r in (non_member, wrong_password, unknown)
        ]
        assert errors[0] == errors[1] == errors[2]
        assert r"enter a correct" in errors[0] or "enter the correct" in errors[0]


class CountingHasher(FastAdmittedPBKDF2PasswordHasher):
    """The suite's hasher, counting every hash it computes."""

    calls = 0

    def encode(self, password, salt, iterations=None):
        CountingHasher.calls += 1
        return super().encode(password, salt, iterations)


@pytest.mark.parametrize("path", ["api", "tenant-page"])
def test_every_failed_login_costs_one_password_hash(acme, globex, settings, path):
    settings.PASSWORD_HASHERS = [f"{__name__}.CountingHasher"]
    attempt = LOGIN_PATHS[path]
    counts = {}
    for case, (email, password) in {
        "non-member": (globex.owner.email, PASSWORD),
        "wrong-password": (acme.owner.email, "wrong-password"),
        "unknown-email": ("nobody@example.com", "wrong-password"),
    }.items():
        CountingHasher.calls = 0
        attempt(acme, email, password, REMOTE_ADDR=f"10.1.0.{len(counts)}")
        counts[case] = CountingHasher.calls

    assert counts == {"non-member": 1, "wrong-password": 1, "unknown-email": 1}


def test_a_client_that_keeps_cookies_gets_400_not_a_csrf_refusal_for_a_wrong_password(acme):
    client = APIClient(enforce_csrf_checks=True, HTTP_HOST=acme.host)
    assert (
        client.post("/api/auth/login/", {"email": acme.member.email, "password": PASSWORD}, format="json").status_code
        == 200
    )

    again = client.post("/api/auth/login/", {"email": acme.member.email, "password": "wrong"}, format="json")

    assert again.status_code == 400
    assert again.json()["error"]["message"] == "Unable to log in with provided credentials."


def test_the_api_login_refuses_form_posts_that_a_cross_site_form_could_send(acme):
    response = host_client(acme.host).post(
        "/api/auth/login/", {"email": acme.member.email, "password": PASSWORD}, format="multipart"
    )

    assert response.status_code == 415


def test_a_new_users_email_is_matched_without_regard_to_case(acme):
    user = UserFactory(email="mixed@example.com")
    acme.tenant.memberships.create(user=user, role="member")

    assert api_login(acme.host, "Mixed@Example.COM", PASSWORD).status_code == 200
