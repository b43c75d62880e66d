"""Two-factor sign-in: enrolment, the code step of the API login, the login page and the tenant
admin, recovery codes, turning it off, and a tenant's "require two-factor" policy.

Codes are computed from the secret the server handed out, with allauth's own HOTP function, for
the current 30-second step and its neighbours (MFA_TOTP_TOLERANCE = 1). Enrolment uses the current
step's code and sign-ins the next step's, so a step boundary passing mid-test changes nothing.
"""

from __future__ import annotations

import time
import uuid

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.core.cache import cache
from django_tenants.utils import tenant_context
from rest_framework.authtoken.models import Token

from core.models import User
from tenants.audit.models import AuditEntry
from tenants.mfa.services import SSO_SESSION_KEY, totp_enrol_confirm, totp_enrol_start
from tenants.models import ApiKey, Membership
from tenants.services.api_keys import api_key_create
from tenants.sockets import resolve_connection
from tests.conftest import World, host_client
from tests.factories import PASSWORD, UserFactory
from tests.fakes.oidc_provider import FakeOidcProvider
from tests.tenants.conftest import sent_to
from tests.tenants.test_invitations import invitation_token, invite
from tests.tenants.test_sso_oidc import CLIENT_ID, CLIENT_SECRET, sso_configure, sso_sign_in

pytestmark = pytest.mark.django_db


def code(secret: str, step: int = 0) -> str:
    """The TOTP code of the 30-second step ``step`` away from now."""
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + step))


def wrong_code(secret: str) -> str:
    """Six digits that no step near now has as its code."""
    near = {code(secret, step) for step in range(-2, 4)}
    return next(c for c in (f"{n:06d}" for n in range(0, 10**6, 111111)) if c not in near)


def person(world: World, role: str = Membership.Role.MEMBER) -> User:
    user = UserFactory()
    Membership.objects.create(user=user, tenant=world.tenant, role=role)
    return user


def enrol(world: World, user: User) -> tuple[str, list[str]]:
    """Two-factor sign-in on through the API; the secret and the recovery codes. The code used
    here is the current step's (spent), so sign-ins use the next step's."""
    client = world.client(Token.objects.get_or_create(user=user)[0].key)
    started = client.post("/api/auth/mfa/totp/")
    assert started.status_code == 200, started.content
    secret = started.json()["secret"]
    body = {"enrolment_token": started.json()["enrolment_token"], "code": code(secret)}
    confirmed = client.post("/api/auth/mfa/totp/confirm/", body, format="json")
    assert confirmed.status_code == 201, confirmed.content
    return secret, confirmed.json()["recovery_codes"]


def password_step(world: World, user: User) -> dict:
    response = world.client().post("/api/auth/login/", {"email": user.email, "password": PASSWORD}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def code_step(world: World, mfa_token: str, passcode: str):
    return world.client().post("/api/auth/login/mfa/", {"mfa_token": mfa_token, "code": passcode}, format="json")


# --- Enrolment --------------------------------------------------------------------------------


def test_enrolment_gives_a_secret_and_turns_on_only_after_a_valid_code(acme):
    user = person(acme)
    client = acme.client(Token.objects.create(user=user).key)
    started = client.post("/api/auth/mfa/totp/").json()
    assert started["otpauth_url"].startswith("otpauth://totp/")
    assert f"secret={started['secret']}" in started["otpauth_url"] and "issuer=Strata" in started["otpauth_url"]
    assert client.get("/api/auth/mfa/authenticators/").json() == []

    wrong = client.post(
        "/api/auth/mfa/totp/confirm/",
        {
            "enrolment_token": started["enrolment_token"],
            "code": wrong_code(started["secret"]),
        },
        format="json",
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "mfa_code_invalid"
    assert client.get("/api/auth/mfa/authenticators/").json() == []

    first = code(started["secret"])
    confirmed = client.post(
        "/api/auth/mfa/totp/confirm/", {"enrolment_token": started["enrolment_token"], "code": first}, format="json"
    )
    assert confirmed.status_code == 201, confirmed.content
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    listed = client.get("/api/auth/mfa/authenticators/").json()
    assert sorted(a["type"] for a in listed) == ["recovery_codes", "totp"]
    assert next(a for a in listed if a["type"] == "recovery_codes")["unused_codes"] == 10
    # The secret and the recovery seed are stored encrypted.
    stored = Authenticator.objects.get(user=user, type="totp").data["secret"]
    assert started["secret"] not in stored
    # A second enrolment is refused while one is on.
    assert client.post("/api/auth/mfa/totp/").status_code == 409
    # The code that turned it on cannot sign anyone in within its window.
    assert code_step(acme, password_step(acme, user)["mfa_token"], first).status_code == 400


def test_an_enrolment_token_is_the_persons_own(acme):
    user, other = person(acme), person(acme)
    started = acme.client(Token.objects.create(user=user).key).post("/api/auth/mfa/totp/").json()
    response = acme.client(Token.objects.create(user=other).key).post(
        "/api/auth/mfa/totp/confirm/",
        {"enrolment_token": started["enrolment_token"], "code": code(started["secret"])},
        format="json",
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "enrolment_invalid"
    assert not Authenticator.objects.filter(user__in=[user, other]).exists()


def test_api_keys_cannot_manage_two_factor(acme):
    _, key = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="ci", scope=ApiKey.Scope.WRITE)
    client = host_client(acme.host)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.post("/api/auth/mfa/totp/").status_code in (401, 403)


# --- Signing in through the API ---------------------------------------------------------------


def test_with_two_factor_the_password_gives_a_pending_token_and_the_code_gives_the_key(acme):
    user = person(acme)
    secret, _ = enrol(acme, user)
    Token.objects.filter(user=user).delete()

    pending = password_step(acme, user)
    assert pending["mfa_required"] is True and "key" not in pending
    assert pending["methods"] == ["totp", "recovery_codes"]
    assert not Token.objects.filter(user=user).exists()  # nothing signed in yet

    signed_in = code_step(acme, pending["mfa_token"], code(secret, 1))
    assert signed_in.status_code == 200, signed_in.content
    me = acme.client(signed_in.json()["key"]).get("/api/auth/user/")
    assert me.status_code == 200 and me.json()["email"] == user.email


def test_a_wrong_code_is_refused_and_a_used_code_does_not_work_twice(acme):
    user = person(acme)
    secret, _ = enrol(acme, user)
    pending = password_step(acme, user)["mfa_token"]

    wrong = code_step(acme, pending, wrong_code(secret))
    assert wrong.status_code == 400 and "key" not in wrong.json()
    next_code = code(secret, 1)
    assert code_step(acme, pending, next_code).status_code == 200
    # The same code again, within its window: refused (allauth remembers it), even with a new token.
    again = code_step(acme, password_step(acme, user)["mfa_token"], next_code)
    assert again.status_code == 400


def test_wrong_codes_lock_the_account_out_like_wrong_passwords(acme, settings):
    settings.AXES_FAILURE_LIMIT = 3
    user = person(acme)
    secret, _ = enrol(acme, user)
    pending = password_step(acme, user)["mfa_token"]
    for _ in range(3):
        code_step(acme, pending, wrong_code(secret))
    locked = code_step(acme, pending, code(secret, 1))
    assert locked.status_code == 429 and locked.json()["error"]["code"] == "throttled"
    assert "Retry-After" in locked


def test_a_recovery_code_signs_in_once(acme):
    user = person(acme)
    _, recovery = enrol(acme, user)
    assert code_step(acme, password_step(acme, user)["mfa_token"], recovery[0]).status_code == 200
    assert code_step(acme, password_step(acme, user)["mfa_token"], recovery[0]).status_code == 400
    # Dashes and spaces, as people copy them, are fine.
    spaced = f"{recovery[1][:4]}-{recovery[1][4:]}"
    assert code_step(acme, password_step(acme, user)["mfa_token"], spaced).status_code == 200
    listed = acme.client(Token.objects.get(user=user).key).get("/api/auth/mfa/authenticators/").json()
    assert next(a for a in listed if a["type"] == "recovery_codes")["unused_codes"] == 8


def test_a_pending_token_works_only_on_its_own_host_fresh_and_before_a_password_change(acme, globex, settings):
    user = person(acme)
    Membership.objects.create(user=user, tenant=globex.tenant, role=Membership.Role.MEMBER)
    secret, _ = enrol(acme, user)
    pending = password_step(acme, user)["mfa_token"]

    elsewhere = code_step(globex, pending, code(secret, 1))
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "mfa_token_invalid"
    forged = code_step(acme, pending[:-2] + "xx", code(secret, 1))
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "mfa_token_invalid"

    user.set_password("An0ther-Passw0rd!")
    user.save(update_fields=["password"])
    assert code_step(acme, pending, code(secret, 1)).json()["error"]["code"] == "mfa_token_invalid"

    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    fresh = password_step(acme, user)["mfa_token"]
    settings.MFA_LOGIN_MAX_AGE = -1
    assert code_step(acme, fresh, code(secret, 1)).json()["error"]["code"] == "mfa_token_expired"


def test_without_two_factor_the_login_answers_the_key_at_once(acme):
    user = person(acme)
    assert "key" in password_step(acme, user)


# --- Recovery codes and turning it off ----------------------------------------------------------


def test_new_recovery_codes_need_a_password_or_code_and_replace_the_old_ones(acme):
    user = person(acme)
    _, old = enrol(acme, user)
    client = acme.client(Token.objects.get(user=user).key)
    assert client.post("/api/auth/mfa/recovery-codes/", {}, format="json").status_code == 400
    refused = client.post("/api/auth/mfa/recovery-codes/", {"password": "wrong"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "reauthentication_failed"

    new = client.post("/api/auth/mfa/recovery-codes/", {"password": PASSWORD}, format="json").json()["recovery_codes"]
    assert len(new) == 10 and set(new) != set(old)
    assert code_step(acme, password_step(acme, user)["mfa_token"], old[0]).status_code == 400
    assert code_step(acme, password_step(acme, user)["mfa_token"], new[0]).status_code == 200


def test_turning_it_off_needs_the_password_or_a_current_code_and_tells_the_person(acme, jobs):
    user = person(acme)
    secret, _ = enrol(acme, user)
    client = acme.client(Token.objects.get(user=user).key)
    assert client.post("/api/auth/mfa/disable/", {"password": "nope"}, format="json").status_code == 400
    assert Authenticator.objects.filter(user=user).count() == 2

    with jobs():
        off = client.post("/api/auth/mfa/disable/", {"code": code(secret, 1)}, format="json")
    assert off.status_code == 204
    (mail,) = sent_to(user.email)
    assert "turned off" in mail.subject and f"{acme.host}" in mail.body
    assert not Authenticator.objects.filter(user=user).exists()
    assert "key" in password_step(acme, user)
    entries = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, actor_id=user.pk).values_list("action", flat=True)
    assert {"mfa.enabled", "mfa.disabled"} <= set(entries)


# --- The login page and the tenant admin ------------------------------------------------------


def test_the_login_page_asks_for_the_code_before_any_session(acme):
    user = person(acme)
    secret, _ = enrol(acme, user)
    client = host_client(acme.host)
    page = client.post("/login/", {"username": user.email, "password": PASSWORD, "next": "/chat/"})
    assert page.status_code == 200 and b'id="mfa-login"' in page.content
    assert "_auth_user_id" not in client.session
    token = page.context["mfa_token"]

    wrong = client.post("/login/mfa/", {"mfa_token": token, "code": "12", "next": "/chat/"})
    assert wrong.status_code == 400 and b"That code is not right." in wrong.content
    assert "_auth_user_id" not in client.session

    done = client.post("/login/mfa/", {"mfa_token": token, "code": code(secret, 1), "next": "/chat/"})
    assert done.status_code == 302 and done["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200


def test_the_code_step_never_redirects_off_the_host(acme):
    user = person(acme)
    secret, _ = enrol(acme, user)
    client = host_client(acme.host)
    token = client.post("/login/", {"username": user.email, "password": PASSWORD}).context["mfa_token"]
    done = client.post("/login/mfa/", {"mfa_token": token, "code": code(secret, 1), "next": "https://evil.test/"})
    assert done.status_code == 302 and done["Location"] == "/"


def test_the_tenant_admin_login_asks_for_the_code(acme):
    owner = person(acme, Membership.Role.OWNER)
    secret, _ = enrol(acme, owner)
    client = host_client(acme.host)
    page = client.post("/admin/login/?next=/admin/", {"username": owner.email, "password": PASSWORD, "next": "/admin/"})
    assert page.status_code == 200 and b'id="mfa-login"' in page.content
    assert client.get("/admin/").status_code == 302  # still signed out
    done = client.post(
        "/login/mfa/", {"mfa_token": page.context["mfa_token"], "code": code(secret, 1), "next": "/admin/"}
    )
    assert done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


# --- The tenant's policy ------------------------------------------------------------------------


def test_only_owners_with_two_factor_themselves_may_require_it(acme):
    owner = person(acme, Membership.Role.OWNER)
    member = person(acme)
    owner_client = acme.client(Token.objects.create(user=owner).key)
    member_client = acme.client(Token.objects.create(user=member).key)
    assert member_client.put("/api/mfa/policy/", {"required": True}, format="json").status_code == 403
    refused = owner_client.put("/api/mfa/policy/", {"required": True}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "mfa_not_enabled"

    enrol(acme, owner)
    assert owner_client.put("/api/mfa/policy/", {"required": True}, format="json").json() == {"required": True}
    assert member_client.get("/api/mfa/policy/").json() == {"required": True}
    entry = AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="mfa.policy_changed").latest("id")
    assert entry.changes == {"mfa_required": [False, True]} and entry.actor_id == owner.pk


@pytest.fixture
def strict(acme):
    """acme requiring two-factor sign-in, turned on by an owner who has it."""
    owner = person(acme, Membership.Role.OWNER)
    enrol(acme, owner)
    response = acme.client(Token.objects.get(user=owner).key).put("/api/mfa/policy/", {"required": True}, format="json")
    assert response.status_code == 200
    return acme


def test_required_two_factor_blocks_the_api_until_the_member_enrols(strict):
    member = person(strict)
    client = strict.client(Token.objects.create(user=member).key)
    for path in ("/api/documents/", "/api/auth/user/", "/api/members/"):
        blocked = client.get(path)
        assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "mfa_enrolment_required", path
    assert client.get("/api/auth/mfa/authenticators/").status_code == 200  # the set-up stays open

    enrol(strict, member)
    assert client.get("/api/documents/").status_code == 200


def test_required_two_factor_sends_page_visitors_to_the_set_up(strict):
    member = person(strict)
    client = strict.session_client(member)
    page = client.get("/chat/")
    assert page.status_code == 302 and page["Location"].startswith("/account/security/?required=1")
    security = client.get(page["Location"])
    assert security.status_code == 200 and b"requires two-factor sign-in" in security.content
    assert client.post("/logout/").status_code == 302


def test_required_two_factor_leaves_api_keys_and_sso_sessions_alone(strict):
    _, key = api_key_create(tenant=strict.tenant, created_by=strict.owner, name="ci", scope=ApiKey.Scope.READ)
    keyed = host_client(strict.host)
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert keyed.get("/api/documents/").status_code == 200

    member = person(strict)
    client = strict.session_client(member)
    with tenant_context(strict.tenant):
        session = client.session
        session[SSO_SESSION_KEY] = True
        session.save()
    assert client.get("/api/documents/").status_code == 200


def test_turning_the_policy_off_frees_members_at_once(strict):
    member = person(strict)
    client = strict.client(Token.objects.create(user=member).key)
    assert client.get("/api/documents/").status_code == 403
    owner = Membership.objects.filter(tenant=strict.tenant, role=Membership.Role.OWNER).exclude(user=strict.owner)
    owner_client = strict.client(Token.objects.get(user=owner.first().user).key)
    cache.clear()  # the code the policy's owner signed in with is irrelevant here; fresh limits
    assert owner_client.put("/api/mfa/policy/", {"required": False}, format="json").status_code == 200
    assert client.get("/api/documents/").status_code == 200


def test_required_two_factor_keeps_the_chat_socket_shut_until_the_member_enrols(strict):
    member = person(strict)
    key = Token.objects.create(user=member).key
    scope = {
        "type": "websocket",
        "headers": [(b"host", strict.host.encode()), (b"authorization", f"Token {key}".encode())],
    }
    assert resolve_connection(scope)["membership"] is None  # the consumer closes it as for a non-member

    enrol(strict, member)
    assert resolve_connection(scope)["membership"] is not None


def test_an_sso_sign_in_counts_as_the_identity_providers_second_factor(strict):
    with FakeOidcProvider() as provider:
        provider.client_add(CLIENT_ID, CLIENT_SECRET)
        provider.person = {"sub": "idp-1", "email": "grace@acme.test", "email_verified": True, "name": "Grace"}
        sso_configure(strict, provider)
        client = host_client(strict.host)
        done = sso_sign_in(client, next_url="/chat/")
    assert done.status_code == 302 and done["Location"] == "/chat/"
    assert client.get("/chat/").status_code == 200  # not sent to set up two-factor sign-in
    assert client.get("/api/documents/").status_code == 200


def test_the_operators_admin_login_asks_for_the_code(acme):
    operator = User.objects.create_superuser(f"op{uuid.uuid4().hex[:6]}@strata.test", PASSWORD)
    enrolment = totp_enrol_start(user=operator)
    totp_enrol_confirm(
        user=operator, enrolment_token=enrolment.enrolment_token, code=code(enrolment.secret), tenant=acme.tenant
    )
    client = host_client("localhost")
    page = client.post(
        "/admin/login/?next=/admin/", {"username": operator.email, "password": PASSWORD, "next": "/admin/"}
    )
    assert page.status_code == 200 and b'id="mfa-login"' in page.content
    assert client.get("/admin/").status_code == 302  # still signed out
    token = page.context["mfa_token"]
    assert (
        client.post(
            "/login/mfa/", {"mfa_token": token, "code": wrong_code(enrolment.secret), "next": "/admin/"}
        ).status_code
        == 400
    )
    done = client.post("/login/mfa/", {"mfa_token": token, "code": code(enrolment.secret, 1), "next": "/admin/"})
    assert done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


@pytest.mark.parametrize("surface", ["page", "api"])
def test_an_account_with_two_factor_joins_by_invitation_with_its_password_but_signs_in_only_with_the_code(
    acme, globex, jobs, surface
):
    user = person(globex)
    secret, _ = enrol(globex, user)
    invite(acme, acme.owner_token, user.email, jobs=jobs)
    token = invitation_token(acme, user.email)
    client = host_client(acme.host)

    if surface == "api":
        answer = client.post("/api/invitations/accept/", {"token": token, "password": PASSWORD}, format="json")
        assert answer.status_code == 200 and answer.json()["mfa_required"] and "key" not in answer.json()
        signed_in = code_step(acme, answer.json()["mfa_token"], code(secret, 1))
        assert signed_in.status_code == 200 and signed_in.json()["key"]
    else:
        page = client.post(f"/invite/{token}/", {"password": PASSWORD})
        assert page.status_code == 200 and b'id="mfa-login"' in page.content
        assert "_auth_user_id" not in client.session
        done = client.post(
            "/login/mfa/", {"mfa_token": page.context["mfa_token"], "code": code(secret, 1), "next": "/"}
        )
        assert done.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)
    assert Membership.objects.filter(tenant=acme.tenant, user=user).exists()
