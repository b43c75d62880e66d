"""OpenID Connect sign-in per tenant, against a real identity provider on loopback (tests/fakes/oidc_provider.py).

Most flows run our app in-process (Django's test client, inside the test's transaction) while
every hop to the provider is real HTTP: the authorize redirect is fetched from the provider with
httpx, and the app itself talks to the provider's discovery, token and JWKS endpoints. The last
tests drive the same flow against the live server with httpx following every redirect.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpcore
import httpx
import pytest
from allauth.socialaccount.models import SocialAccount
from django.db import connection
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_tenants.utils import schema_context

from core.models import User
from tenants.audit.models import AuditEntry
from tenants.models import Membership
from tenants.scim.models import ScimUser
from tenants.services.accounts import password_reset_tokens
from tenants.sso.models import SsoConfig
from tests.conftest import World, host_client
from tests.factories import PASSWORD
from tests.fakes.oidc_provider import FakeOidcProvider

CLIENT_ID, CLIENT_SECRET = "strata-acme", "acme-client-secret"
OTHER_CLIENT_ID, OTHER_CLIENT_SECRET = "strata-globex", "globex-client-secret"


@pytest.fixture(scope="module")
def idp_server() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider() as provider:
        provider.client_add(CLIENT_ID, CLIENT_SECRET)
        provider.client_add(OTHER_CLIENT_ID, OTHER_CLIENT_SECRET)
        yield provider


@pytest.fixture
def idp(idp_server: FakeOidcProvider) -> FakeOidcProvider:
    idp_server.reset()
    idp_server.person = {"sub": "idp-user-1", "email": "ada@acme.test", "email_verified": True, "name": "Ada Lovelace"}
    return idp_server


def sso_configure(world: World, idp: FakeOidcProvider, **overrides: Any) -> SsoConfig:
    values: dict[str, Any] = {
        "protocol": "oidc",
        "issuer": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_domains": ["acme.test"],
        "default_role": "member",
    }
    return SsoConfig.objects.create(tenant=world.tenant, **(values | overrides))


@pytest.fixture
def acme_sso(acme: World, idp: FakeOidcProvider) -> SsoConfig:
    return sso_configure(acme, idp)


def authorize(url: str) -> str:
    """The provider's answer to an authorize request (auto-consent): the callback URL it sends back to."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def sso_start(client: Any, next_url: str = "/") -> str:
    response = client.get("/sso/login/", {"next": next_url})
    assert response.status_code == 302, response.content
    return response["Location"]


def sso_sign_in(client: Any, next_url: str = "/") -> Any:
    """The whole flow: our redirect, the provider's consent, our callback."""
    return client.get(callback_path(authorize(sso_start(client, next_url))))


def signed_in(client: Any) -> bool:
    return client.get("/account/").status_code == 200


def refusal_code(response: Any) -> str:
    assert response.status_code in (400, 403, 404, 502), response.status_code
    body = response.content.decode()
    assert 'id="sso-refused"' in body
    return body.split('data-code="', 1)[1].split('"', 1)[0]


# --- Configuration --------------------------------------------------------------------------


def test_client_secret_is_stored_encrypted(acme: World) -> None:
    SsoConfig.objects.create(
        tenant=acme.tenant, protocol="oidc", issuer="http://127.0.0.1:1/", client_id="c", client_secret="s3cr3t-value"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM sso_ssoconfig WHERE tenant_id = %s", [acme.tenant.pk])
        (stored,) = cursor.fetchone()
    assert "s3cr3t-value" not in stored
    assert SsoConfig.objects.for_tenant(acme.tenant).get().client_secret == "s3cr3t-value"


def put_body(idp: FakeOidcProvider, **overrides: Any) -> dict[str, Any]:
    body = {
        "protocol": "oidc",
        "issuer": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "allowed_domains": ["ACME.test", "@acme.example"],
        "default_role": "member",
        "enforced": False,
    }
    return body | overrides


def test_owner_puts_reads_and_deletes_the_configuration_and_never_sees_the_secret(
    acme: World, idp: FakeOidcProvider
) -> None:
    owner = acme.client(acme.owner_token)
    put = owner.put("/api/sso/", put_body(idp), format="json")
    assert put.status_code == 200, put.content
    got = owner.get("/api/sso/")
    assert got.status_code == 200
    body = got.json()
    assert body["issuer"] == idp.issuer and body["client_id"] == CLIENT_ID
    assert body["allowed_domains"] == ["acme.test", "acme.example"]
    assert body["has_client_secret"] is True
    assert CLIENT_SECRET not in got.content.decode() and CLIENT_SECRET not in put.content.decode()
    assert body["callback_url"] == "http://acme.localhost/sso/callback/"
    # A replacement without a secret keeps the stored one.
    without_secret = {key: value for key, value in put_body(idp, enforced=True).items() if key != "client_secret"}
    again = owner.put("/api/sso/", without_secret, format="json")
    assert again.status_code == 200, again.content
    assert SsoConfig.objects.for_tenant(acme.tenant).get().client_secret == CLIENT_SECRET
    assert owner.delete("/api/sso/").status_code == 204
    assert owner.get("/api/sso/").json()["error"]["code"] == "sso_not_configured"
    changes = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="sso.changed").order_by("id")
    assert [entry.changes.get("enforced") for entry in changes][:2] == [[None, False], [False, True]]
    assert all(CLIENT_SECRET not in str(entry.changes) for entry in changes)


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        pytest.param({"issuer": "http://idp.example.com"}, 400, "issuer_insecure", id="http-not-loopback"),
        pytest.param({"issuer": "ftp://127.0.0.1/"}, 400, "issuer_invalid", id="not-http"),
        pytest.param({"client_id": ""}, 400, "client_id_required", id="no-client-id"),
        pytest.param({"allowed_domains": ["not a domain"]}, 400, "domain_invalid", id="bad-domain"),
        pytest.param({"default_role": "owner"}, 400, "invalid", id="owner-role"),
        pytest.param({"protocol": "kerberos"}, 400, "invalid", id="protocol"),
        pytest.param({"issuer": "http://127.0.0.1:9/nothing"}, 502, "discovery_failed", id="unreachable"),
    ],
)
def test_put_refuses_bad_input_with_clear_codes(
    acme: World, idp: FakeOidcProvider, overrides: dict[str, Any], status: int, code: str
) -> None:
    response = acme.client(acme.owner_token).put("/api/sso/", put_body(idp, **overrides), format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert not SsoConfig.objects.for_tenant(acme.tenant).exists()


def test_put_refuses_a_provider_whose_discovery_names_another_issuer(acme: World, idp: FakeOidcProvider) -> None:
    # The same server under another name: its discovery document says 127.0.0.1.
    response = acme.client(acme.owner_token).put(
        "/api/sso/", put_body(idp, issuer=f"http://localhost:{idp.port}"), format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "issuer_mismatch"


@pytest.mark.parametrize(
    "issuer", ["https://10.1.2.3", "https://localhost:8443", "https://169.254.169.254/", "https://[::1]/"]
)
def test_production_refuses_issuers_on_private_addresses(
    acme: World, idp: FakeOidcProvider, settings: Any, issuer: str
) -> None:
    settings.SSO_LOCAL_PROVIDERS = False
    response = acme.client(acme.owner_token).put("/api/sso/", put_body(idp, issuer=issuer), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "issuer_private"


def test_production_accepts_only_https_issuers(acme: World, idp: FakeOidcProvider, settings: Any) -> None:
    settings.SSO_LOCAL_PROVIDERS = False
    response = acme.client(acme.owner_token).put("/api/sso/", put_body(idp), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "issuer_insecure"


def test_only_owners_manage_sso(acme: World, idp: FakeOidcProvider, new_member: Any) -> None:
    _, admin_token = new_member(acme, Membership.Role.ADMIN)
    for token in (admin_token, acme.member_token):
        assert acme.client(token).get("/api/sso/").status_code == 403
        assert acme.client(token).put("/api/sso/", put_body(idp), format="json").status_code == 403
    assert not SsoConfig.objects.exists()


def test_the_settings_page_is_the_owners_and_says_what_is_wrong(
    acme: World, idp: FakeOidcProvider, new_member: Any
) -> None:
    admin, _ = new_member(acme, Membership.Role.ADMIN)
    for person in (admin, acme.member):
        assert acme.session_client(person).get("/settings/sso/").status_code == 403
    owner = acme.session_client(acme.owner)
    page = owner.get("/settings/sso/")
    assert page.status_code == 200 and "http://acme.localhost/sso/callback/" in page.content.decode()
    form = {"protocol": "oidc", "issuer": "http://idp.example.com", "client_id": CLIENT_ID, "default_role": "member"}
    refused = owner.post("/settings/sso/", form | {"client_secret": CLIENT_SECRET})
    assert refused.status_code == 400 and "https://" in refused.content.decode()
    saved = owner.post(
        "/settings/sso/",
        form | {"issuer": idp.issuer, "client_secret": CLIENT_SECRET, "allowed_domains": "acme.test, acme.example"},
    )
    assert saved.status_code == 302
    assert SsoConfig.objects.for_tenant(acme.tenant).get().allowed_domains == ["acme.test", "acme.example"]
    assert 'id="sso-login"' in host_client(acme.host).get("/login/").content.decode()
    assert owner.post("/settings/sso/", {"action": "delete"}).status_code == 302
    assert 'id="sso-login"' not in host_client(acme.host).get("/login/").content.decode()


# --- Signing in -----------------------------------------------------------------------------


def test_first_sign_in_creates_the_person_with_the_default_role_and_a_session(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    client = host_client(acme.host)
    done = sso_sign_in(client, next_url="/chat/")
    assert done.status_code == 302 and done["Location"] == "/chat/"
    user = User.objects.get(email="ada@acme.test")
    assert user.full_name == "Ada Lovelace" and not user.has_usable_password()
    assert Membership.objects.for_tenant(acme.tenant).get(user=user).role == "member"
    assert signed_in(client)
    # What was on the wire: PKCE S256, a state and a nonce; the verifier matched (the fake checks it).
    (asked,) = idp.state.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["state"] and len(asked["nonce"]) >= 32
    (token_request,) = idp.state.token_requests
    digest = hashlib.sha256(token_request["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == asked["code_challenge"]
    entry = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="auth.login").latest("id")
    assert entry.changes["method"] == "sso" and entry.changes["how"] == "created"


def test_returning_person_signs_in_as_the_same_account(acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig) -> None:
    sso_sign_in(host_client(acme.host))
    idp.person = idp.person | {"email": "ada.renamed@acme.test"}
    client = host_client(acme.host)
    assert sso_sign_in(client).status_code == 302
    assert User.objects.filter(email__startswith="ada").count() == 1
    assert signed_in(client)


def test_an_existing_account_is_linked_when_the_provider_verified_the_email(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    idp.person = {"sub": "member-at-idp", "email": acme.member.email.upper(), "email_verified": True}
    acme_sso.allowed_domains = []  # linking a member needs no allowed domain
    acme_sso.save()
    client = host_client(acme.host)
    assert sso_sign_in(client).status_code == 302
    assert SocialAccount.objects.get(uid="member-at-idp").user == acme.member
    assert signed_in(client)


def test_an_existing_account_is_not_linked_when_the_email_is_unverified(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    idp.person = {"sub": "impostor", "email": acme.member.email, "email_verified": False}
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "email_unverified"
    assert not SocialAccount.objects.filter(uid="impostor").exists()
    assert not signed_in(client)


def test_an_account_of_another_organisation_is_never_pulled_in_even_verified_on_an_allowed_domain(
    acme: World, globex: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    # Acme's owner runs the provider: vouching for globex's member would hand that account to them.
    acme_sso.allowed_domains = [globex.member.email.rsplit("@", 1)[1]]
    acme_sso.save()
    idp.person = {"sub": "takeover", "email": globex.member.email, "email_verified": True}
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "account_exists"
    assert not signed_in(client)
    assert not Membership.objects.filter(tenant=acme.tenant, user=globex.member).exists()
    assert not SocialAccount.objects.filter(uid="takeover").exists()


def test_a_domain_that_is_not_allowed_is_refused(acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig) -> None:
    idp.person = {"sub": "outsider", "email": "eve@elsewhere.test", "email_verified": True}
    client = host_client(acme.host)
    response = sso_sign_in(client)
    assert refusal_code(response) == "domain_not_allowed"
    assert not User.objects.filter(email="eve@elsewhere.test").exists()
    assert not signed_in(client)
    failed = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="auth.login_failed").latest("id")
    assert failed.changes["reason"] == "domain_not_allowed"


def test_a_new_issuer_does_not_inherit_the_people_of_the_old_one(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    assert sso_sign_in(host_client(acme.host)).status_code == 302
    ada = User.objects.get(email="ada@acme.test")
    # The owner moves to another provider, where the same subject is somebody else.
    with FakeOidcProvider() as other:
        other.client_add(CLIENT_ID, CLIENT_SECRET)
        other.person = {"sub": "idp-user-1", "email": "mallory@acme.test", "email_verified": True}
        acme_sso.issuer = other.issuer
        acme_sso.save()
        client = host_client(acme.host)
        assert sso_sign_in(client).status_code == 302
        assert client.get("/api/auth/user/").json()["email"] == "mallory@acme.test"
    assert SocialAccount.objects.filter(user=ada).count() == 1


def test_a_person_whose_membership_is_gone_is_refused(acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig) -> None:
    sso_sign_in(host_client(acme.host))
    Membership.objects.for_tenant(acme.tenant).filter(user__email="ada@acme.test").delete()
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "membership_gone"
    assert not signed_in(client)


def test_a_person_the_provider_deprovisioned_over_scim_is_refused(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    # Deactivated by SCIM: the membership is gone and the SCIM record says inactive. The domain is
    # allowed and the e-mail verified, yet SSO must not bring them back in.
    ScimUser.objects.create(
        tenant=acme.tenant, user=acme.member, user_name=acme.member.email, email=acme.member.email, active=False
    )
    Membership.objects.for_tenant(acme.tenant).filter(user=acme.member).delete()
    idp.person = {"sub": "member-at-idp", "email": acme.member.email, "email_verified": True}
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "deprovisioned"
    assert not Membership.objects.for_tenant(acme.tenant).filter(user=acme.member).exists()
    assert not signed_in(client)


@pytest.mark.parametrize(
    "misbehaviour", ["wrong_aud", "bad_signature", "wrong_nonce", "no_nonce", "expired", "wrong_iss"]
)
def test_an_id_token_that_fails_verification_signs_nobody_in(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig, misbehaviour: str
) -> None:
    idp.misbehave.add(misbehaviour)
    client = host_client(acme.host)
    assert refusal_code(sso_sign_in(client)) == "sso_failed"
    assert not User.objects.filter(email="ada@acme.test").exists()
    assert not signed_in(client)
    failed = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="auth.login_failed").latest("id")
    assert failed.changes["method"] == "sso" and failed.changes["reason"] == "sso_failed"


def test_a_replayed_callback_is_refused(acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig) -> None:
    client = host_client(acme.host)
    callback = callback_path(authorize(sso_start(client)))
    assert client.get(callback).status_code == 302
    client.post("/logout/")
    assert refusal_code(client.get(callback)) == "sso_failed"  # the state was used
    assert not signed_in(client)


def test_a_replayed_code_is_refused_by_the_provider(acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig) -> None:
    client = host_client(acme.host)
    first = parse_qs(urlsplit(authorize(sso_start(client))).query)
    assert client.get("/sso/callback/", {"code": first["code"][0], "state": first["state"][0]}).status_code == 302
    attacker = host_client(acme.host)
    second = parse_qs(urlsplit(authorize(sso_start(attacker))).query)
    # The old code with a fresh state of the attacker's own session.
    response = attacker.get("/sso/callback/", {"code": first["code"][0], "state": second["state"][0]})
    assert refusal_code(response) == "sso_failed"
    assert "code already used" in idp.state.token_refusals
    assert not signed_in(attacker)


def test_a_code_injected_into_another_sign_in_fails_its_pkce_check(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    victim, attacker = host_client(acme.host), host_client(acme.host)
    stolen = parse_qs(urlsplit(authorize(sso_start(victim))).query)["code"][0]
    own_state = parse_qs(urlsplit(authorize(sso_start(attacker))).query)["state"][0]
    response = attacker.get("/sso/callback/", {"code": stolen, "state": own_state})
    assert refusal_code(response) == "sso_failed"
    assert idp.state.token_refusals == ["code_verifier does not match the code_challenge"]
    assert not signed_in(attacker)


def test_the_provider_refuses_a_token_request_without_the_pkce_verifier(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    client = host_client(acme.host)
    callback = urlsplit(authorize(sso_start(client)))
    code = parse_qs(callback.query)["code"][0]
    redirect_uri = f"{callback.scheme}://{callback.netloc}{callback.path}"
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    answer = httpx.post(f"{idp.issuer}/token", data=form, auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert answer.status_code == 400 and answer.json()["error_description"] == "code_verifier missing"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "http://globex.localhost/", "/\\evil.example"]
)
def test_next_never_leaves_the_host(acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig, target: str) -> None:
    response = sso_sign_in(host_client(acme.host), next_url=target)
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_tenant_without_sso_has_no_sign_in(globex: World) -> None:
    client = host_client(globex.host)
    assert refusal_code(client.get("/sso/login/")) == "sso_not_configured"
    assert refusal_code(client.get("/sso/callback/", {"code": "x", "state": "y"})) == "sso_not_configured"


def test_one_tenants_configuration_never_signs_into_another(
    acme: World, globex: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    sso_configure(
        globex, idp, client_id=OTHER_CLIENT_ID, client_secret=OTHER_CLIENT_SECRET, allowed_domains=["globex.test"]
    )
    # Acme's callback (code and state) replayed on globex's host, in a session that has a state of
    # its own at globex: the state is not found there, and acme's code is not globex's to redeem.
    acme_client, globex_client = host_client(acme.host), host_client(globex.host)
    acme_callback = authorize(sso_start(acme_client))
    authorize(sso_start(globex_client))
    assert refusal_code(globex_client.get(callback_path(acme_callback))) == "sso_failed"
    globex_state = parse_qs(urlsplit(authorize(sso_start(globex_client))).query)["state"][0]
    acme_code = parse_qs(urlsplit(acme_callback).query)["code"][0]
    response = globex_client.get("/sso/callback/", {"code": acme_code, "state": globex_state})
    assert refusal_code(response) == "sso_failed"
    assert idp.state.token_refusals == ["code issued to another client"]
    assert not signed_in(globex_client)
    # The person acme's provider knows, signed in at acme, is a stranger to globex's configuration.
    assert sso_sign_in(host_client(acme.host)).status_code == 302
    # ...and as an account of acme's, it is never pulled into globex either.
    assert refusal_code(sso_sign_in(host_client(globex.host))) == "account_exists"
    assert not Membership.objects.for_tenant(globex.tenant).filter(user__email="ada@acme.test").exists()


def test_the_owners_test_sign_in_shows_the_claims_and_signs_nobody_in(
    acme: World, idp: FakeOidcProvider, acme_sso: SsoConfig
) -> None:
    owner = acme.session_client(acme.owner)
    started = owner.get("/sso/test/")
    assert started.status_code == 302
    result = owner.get(callback_path(authorize(started["Location"])))
    assert result.status_code == 200
    page = result.content.decode()
    assert 'data-claim="email"' in page and "ada@acme.test" in page
    assert not User.objects.filter(email="ada@acme.test").exists()
    assert owner.get("/api/auth/user/").json()["email"] == acme.owner.email
    assert acme.session_client(acme.member).get("/sso/test/").status_code == 403


# --- The enforced policy --------------------------------------------------------------------


@pytest.fixture
def enforced(acme: World, idp: FakeOidcProvider) -> SsoConfig:
    # Fresh rows: the session-wide world's objects must not carry a password this test rolls back.
    for user in User.objects.filter(pk__in=[acme.owner.pk, acme.member.pk]):
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    return sso_configure(acme, idp, enforced=True)


def test_enforced_sso_refuses_member_passwords_on_the_api_and_keeps_owners(acme: World, enforced: SsoConfig) -> None:
    client = host_client(acme.host)
    refused = client.post("/api/auth/login/", {"email": acme.member.email, "password": PASSWORD}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "sso_required"
    owner = client.post("/api/auth/login/", {"email": acme.owner.email, "password": PASSWORD}, format="json")
    assert owner.status_code == 200


def test_enforced_sso_refuses_member_passwords_on_the_login_page(acme: World, enforced: SsoConfig) -> None:
    client = host_client(acme.host)
    page = client.get("/login/").content.decode()
    assert 'id="sso-login"' in page
    refused = client.post("/login/", {"username": acme.member.email, "password": PASSWORD})
    assert refused.status_code == 403
    assert "single sign-on" in refused.content.decode()
    assert not signed_in(client)
    assert client.post("/login/", {"username": acme.owner.email, "password": PASSWORD}).status_code == 302


def test_enforced_sso_refuses_an_admins_password_on_the_tenant_admin(acme: World, enforced: SsoConfig) -> None:
    admin = User.objects.create_user("admin-pw@acme.test", PASSWORD)
    Membership.objects.create(tenant=acme.tenant, user=admin, role=Membership.Role.ADMIN)
    client = host_client(acme.host)
    refused = client.post("/admin/login/", {"username": admin.email, "password": PASSWORD})
    assert refused.status_code == 200
    assert "single sign-on" in refused.content.decode()
    assert not signed_in(client)


def test_enforced_sso_refuses_a_members_password_reset(acme: World, enforced: SsoConfig) -> None:
    member = User.objects.get(pk=acme.member.pk)
    uid = urlsafe_base64_encode(force_bytes(member.pk))
    body = {"uid": uid, "token": password_reset_tokens(tenant=acme.tenant).make_token(member)}
    body |= {"new_password1": "A-new-long-passphrase-1", "new_password2": "A-new-long-passphrase-1"}
    refused = host_client(acme.host).post("/api/auth/password/reset/confirm/", body, format="json")
    assert refused.status_code == 403, refused.content
    assert refused.json()["error"]["code"] == "sso_required"
    member.refresh_from_db()
    assert member.check_password(PASSWORD)


def test_sso_signs_members_in_while_enforced(acme: World, idp: FakeOidcProvider, enforced: SsoConfig) -> None:
    idp.person = {"sub": "member-at-idp", "email": acme.member.email, "email_verified": True}
    client = host_client(acme.host)
    assert sso_sign_in(client).status_code == 302
    assert signed_in(client)


# --- Against the live server, httpx following every redirect -----------------------------------


class _LoopbackBackend(httpcore.SyncBackend):
    """*.localhost reaches 127.0.0.1, as in a browser; the URL and its cookies keep the name."""

    def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return super().connect_tcp("127.0.0.1" if host.endswith(".localhost") else host, port, *args, **kwargs)


def browser_like_client() -> httpx.Client:
    transport = httpx.HTTPTransport()
    transport._pool = httpcore.ConnectionPool(network_backend=_LoopbackBackend())
    return httpx.Client(transport=transport, follow_redirects=True, timeout=30)


@pytest.fixture(scope="module")
def live_world(django_db_setup: Any, django_db_blocker: Any) -> World:
    from tests.ai.factories import world_create

    with django_db_blocker.unblock():
        return world_create("Sso")


def test_the_whole_flow_on_the_live_server(
    asgi_server: Any, live_world: World, idp: FakeOidcProvider, django_db_blocker: Any
) -> None:
    domain = f"{live_world.tenant.subdomain}.test"
    idp.person = {"sub": "live-1", "email": f"grace@{domain}", "email_verified": True, "name": "Grace"}
    with django_db_blocker.unblock(), schema_context("public"):
        SsoConfig.objects.create(
            tenant=live_world.tenant,
            protocol="oidc",
            issuer=idp.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            allowed_domains=[domain],
        )
    base = asgi_server.host_url(live_world.tenant.subdomain)
    with browser_like_client() as client:
        login_page = client.get(f"{base}/login/?next=/chat/")
        assert 'id="sso-login"' in login_page.text
        done = client.get(f"{base}/sso/login/", params={"next": "/chat/"})
        assert done.status_code == 200 and str(done.url) == f"{base}/chat/"
        hops = [str(r.url).split("?")[0] for r in done.history]
        assert hops == [f"{base}/sso/login/", f"{idp.issuer}/authorize", f"{base}/sso/callback/"]
        assert client.get(f"{base}/api/auth/user/").json()["email"] == f"grace@{domain}"
        # The same callback again (a replay) is refused with a page, not a 500.
        replay = client.get(str(done.history[-1].url))
        assert replay.status_code == 403 and "sso_failed" in replay.text


@pytest.mark.django_db
def test_sign_in_starts_past_the_rate_from_one_address_get_a_429_page(acme: World) -> None:
    """Each start or callback costs a provider round trip: unauthenticated callers are limited per address
    (SSO_THROTTLE_RATE, 30 a minute); another address is not held up."""
    client = host_client(acme.host)
    answers = [client.get("/sso/login/", REMOTE_ADDR="203.0.113.7").status_code for _ in range(31)]

    assert answers[:30] == [404] * 30 and answers[30] == 429  # not set up here: refused, and counted
    refused = client.get("/sso/callback/?code=x&state=y", REMOTE_ADDR="203.0.113.7")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many sign-in attempts" in refused.content.decode()
    assert client.get("/sso/login/", REMOTE_ADDR="203.0.113.8").status_code == 404
