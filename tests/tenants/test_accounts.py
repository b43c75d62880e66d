"""One's own account: password reset and change, signing out everywhere, finding one's workspaces,
changing one's e-mail, leaving. Answers never tell whether an address has an account."""

import re

import pytest
from django.core.cache import cache
from django_tenants.utils import schema_context
from rest_framework.authtoken.models import Token

from core.models import User
from tenants.models import Membership
from tests.conftest import host_client
from tests.factories import PASSWORD, UserFactory
from tests.tenants.conftest import link_in, sent_to

NEW_PASSWORD = "Brand-new-Passw0rd!"


def login(host, email, password):
    return host_client(host).post("/api/auth/login/", {"email": email, "password": password}, format="json")


def reset_request(host, email, jobs):
    with jobs():
        return host_client(host).post("/api/auth/password/reset/", {"email": email}, format="json")


# --- Password reset ----------------------------------------------------------------------------


def test_reset_answers_the_same_for_members_strangers_and_unknown_addresses(acme, globex, jobs):
    member = reset_request(acme.host, acme.member.email, jobs)
    stranger = reset_request(acme.host, globex.member.email, jobs)  # an account, not a member here
    unknown = reset_request(acme.host, "ghost@example.com", jobs)

    assert member.status_code == stranger.status_code == unknown.status_code == 200
    assert member.json() == stranger.json() == unknown.json()
    assert len(sent_to(acme.member.email)) == 1
    assert sent_to(globex.member.email) == [] and sent_to("ghost@example.com") == []


def test_reset_on_the_public_host_answers_the_same_and_links_to_the_public_host(acme, jobs):
    known = reset_request("localhost", acme.member.email, jobs)
    unknown = reset_request("localhost", "ghost@example.com", jobs)

    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    assert link_in(sent_to(acme.member.email)[0], r"http://localhost:8000/reset/[\w-]+/[\w-]+/")


def test_a_reset_link_on_the_tenant_host_sets_a_new_password_and_ends_the_old_one(acme, jobs):
    reset_request(acme.host, acme.member.email, jobs)
    message = sent_to(acme.member.email)[0]
    assert "Acme" in message.subject
    link = link_in(message, r"http://acme\.localhost:8000/reset/[\w-]+/[\w-]+/")
    uid, token = link.rstrip("/").split("/")[-2:]

    with jobs():
        confirmed = host_client(acme.host).post(
            "/api/auth/password/reset/confirm/",
            {"uid": uid, "token": token, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
            format="json",
        )

    assert confirmed.status_code == 200
    assert login(acme.host, acme.member.email, NEW_PASSWORD).status_code == 200
    assert login(acme.host, acme.member.email, PASSWORD).status_code == 400
    assert acme.client(acme.member_token).get("/api/documents/").status_code == 401  # the old token is gone
    reused = host_client(acme.host).post(
        "/api/auth/password/reset/confirm/",
        {"uid": uid, "token": token, "new_password1": "Third-Passw0rd!", "new_password2": "Third-Passw0rd!"},
        format="json",
    )
    assert reused.status_code == 400
    assert "password was changed" in sent_to(acme.member.email)[-1].subject.lower()


def test_the_reset_page_on_the_public_host(acme, jobs):
    with jobs():
        sent = host_client("localhost").post("/password-reset/", {"email": acme.owner.email})
    link = link_in(sent_to(acme.owner.email)[0], r"http://localhost:8000/reset/[\w-]+/[\w-]+/")
    client = host_client("localhost")

    opened = client.get(link.replace("http://localhost:8000", ""))
    form_page = client.get(opened["Location"])
    done = client.post(opened["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    assert sent.status_code == 200 and b"Check your inbox" in sent.content
    assert opened.status_code == 302 and opened["Location"].endswith("/set-password/")
    assert b"Choose a new password" in form_page.content
    assert done.status_code == 302 and done["Location"] == "/reset/done/"
    assert login(acme.host, acme.owner.email, NEW_PASSWORD).status_code == 200


def test_a_bad_reset_link_says_so(acme):
    page = host_client(acme.host).get("/reset/MQ/not-a-token/")

    assert page.status_code == 200
    assert b"This link cannot be used" in page.content


def test_reset_requests_are_throttled_per_address(acme, jobs):
    statuses = [reset_request(acme.host, f"x{i}@example.com", jobs).status_code for i in range(11)]

    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429


def test_reset_mail_to_one_address_is_capped(acme, jobs, settings):
    settings.MAIL_PER_RECIPIENT_PER_HOUR = 2
    answers = {reset_request(acme.host, acme.member.email, jobs).status_code for _ in range(4)}

    assert answers == {200}
    assert len(sent_to(acme.member.email)) == 2


def test_the_cap_keeps_no_address_in_the_cache(acme, jobs, settings):
    settings.MAIL_PER_RECIPIENT_PER_HOUR = 2
    reset_request(acme.host, acme.member.email, jobs)

    keys = [key for key in cache._cache if ":strata:mail:" in key]  # type: ignore[attr-defined] # LocMemCache
    assert keys, "the cap counted nothing"
    assert not [key for key in keys if acme.member.email.split("@")[0] in key], keys


# --- Password change ------------------------------------------------------------------------------


def change(client, old=PASSWORD, new=NEW_PASSWORD):
    return client.post(
        "/api/auth/password/change/",
        {"old_password": old, "new_password1": new, "new_password2": new},
        format="json",
    )


def public_session(user):
    client = host_client("localhost")
    with schema_context("public"):
        client.force_login(user)
    return client


def logged_in(client):
    return client.get("/api/auth/user/").status_code == 200


def test_a_password_change_by_session_ends_every_other_session_and_the_token(acme, globex):
    user = UserFactory(email="roamer@example.com")
    Membership.objects.create(user=user, tenant=acme.tenant, role="member")
    Membership.objects.create(user=user, tenant=globex.tenant, role="member")
    Token.objects.create(user=user)
    here, other_here, on_globex, on_public = (
        acme.session_client(user),
        acme.session_client(user),
        globex.session_client(user),
        public_session(user),
    )
    assert all(logged_in(c) for c in (here, other_here, on_globex, on_public))

    response = change(here)

    assert response.status_code == 200
    assert "key" not in response.json()
    assert logged_in(here)
    assert not logged_in(other_here)
    assert not logged_in(on_globex)
    assert not logged_in(on_public)
    assert not Token.objects.filter(user=user).exists()


def test_a_password_change_by_token_replaces_the_token(acme):
    response = change(acme.client(acme.member_token))

    assert response.status_code == 200
    new_key = response.json()["key"]
    assert new_key != acme.member_token
    assert acme.client(acme.member_token).get("/api/documents/").status_code == 401
    assert acme.client(new_key).get("/api/documents/").status_code == 200


def test_a_password_change_needs_the_old_password(acme):
    response = change(acme.client(acme.member_token), old="wrong")

    assert response.status_code == 400
    assert "old_password" in response.json()["error"]["fields"]
    assert User.objects.get(pk=acme.member.pk).check_password(PASSWORD)


def test_the_account_page_changes_the_password_and_keeps_this_session(acme):
    client, other = acme.session_client(acme.member), acme.session_client(acme.member)

    response = client.post(
        "/account/",
        {"action": "password", "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert client.get("/account/").status_code == 200
    assert other.get("/account/").status_code == 302  # sent to the login page
    assert User.objects.get(pk=acme.member.pk).check_password(NEW_PASSWORD)


def test_sign_out_everywhere_ends_every_session_and_the_token(acme, globex):
    client, on_public = acme.session_client(acme.member), public_session(acme.member)

    response = client.post("/account/", {"action": "signout"})

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert not logged_in(client) and not logged_in(on_public)
    assert acme.client(acme.member_token).get("/api/documents/").status_code == 401
    assert login(acme.host, acme.member.email, PASSWORD).status_code == 200  # the password still works


def test_an_api_key_cannot_change_a_password(acme):
    from tenants.services.api_keys import api_key_create

    _, key = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="ci", scope="write")
    client = host_client(acme.host)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert change(client).status_code == 401
    assert client.get("/api/auth/user/").status_code == 401


# --- Finding one's workspaces --------------------------------------------------------------------


def test_find_workspaces_mails_the_list_and_answers_the_same_for_unknown_addresses(acme, globex, jobs):
    Membership.objects.create(user=acme.member, tenant=globex.tenant, role="member")
    with jobs():
        known = host_client("localhost").post("/api/workspaces/find/", {"email": acme.member.email}, format="json")
        unknown = host_client("localhost").post("/api/workspaces/find/", {"email": "ghost@example.com"}, format="json")

    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()
    message = sent_to(acme.member.email)[0]
    assert link_in(message, r"http://acme\.localhost:8000/login/")
    assert link_in(message, r"http://globex\.localhost:8000/login/")
    assert sent_to("ghost@example.com") == []


def test_the_public_login_page_answers_the_same_for_every_address(acme, jobs):
    with jobs():
        known = host_client("localhost").post("/login/", {"email": acme.owner.email})
        unknown = host_client("localhost").post("/login/", {"email": "nobody@example.org"})

    def text(response):
        return re.sub(r"\S+@\S+", "@", response.content.decode())

    assert known.status_code == unknown.status_code == 200
    assert re.sub(r"csrfmiddlewaretoken\S+", "", text(known)) == re.sub(r"csrfmiddlewaretoken\S+", "", text(unknown))
    assert len(sent_to(acme.owner.email)) == 1


def test_find_workspaces_is_public_host_only_and_throttled(acme, jobs):
    assert acme.client().post("/api/workspaces/find/", {"email": "a@example.com"}, format="json").status_code == 404
    statuses = [
        host_client("localhost")
        .post("/api/workspaces/find/", {"email": f"a{i}@example.com"}, format="json")
        .status_code
        for i in range(11)
    ]
    assert statuses[-1] == 429


def test_the_tenant_login_page_offers_a_password_reset(acme):
    page = host_client(acme.host).get("/login/")

    assert b'href="/password-reset/"' in page.content


# --- E-mail change, name, leaving ------------------------------------------------------------------


def test_an_email_change_is_confirmed_from_the_new_address(acme, jobs):
    client = acme.session_client(acme.member)
    with jobs():
        asked = client.post("/account/", {"action": "email", "email": "moved@example.com"})
    link = link_in(sent_to("moved@example.com")[0], r"http://acme\.localhost:8000/account/email/[^/\s]+/")
    path = link.replace("http://acme.localhost:8000", "")

    assert asked.status_code == 302
    assert User.objects.get(pk=acme.member.pk).email == acme.member.email  # not before the link
    assert client.get(path).status_code == 200  # a page with a button: scanners do not confirm
    with jobs():
        confirmed = client.post(path)
    assert confirmed.status_code == 302
    assert User.objects.get(pk=acme.member.pk).email == "moved@example.com"
    assert sent_to(acme.member.email)[-1].subject == "The e-mail address of your Strata account was changed"
    assert client.post(path).status_code == 410  # once


def test_an_email_change_to_a_taken_address_looks_the_same_and_tells_only_that_address(acme, globex, jobs):
    client = acme.session_client(acme.member)
    with jobs():
        taken = client.post("/account/", {"action": "email", "email": globex.owner.email}, follow=True)
        free = client.post("/account/", {"action": "email", "email": "free@example.com"}, follow=True)

    def text(response):
        return re.sub(r"\S+@\S+", "@", response.content.decode())

    def without_tokens(page: str) -> str:  # the CSRF token differs per response, in forms and htmx headers
        return re.sub(r'"X-CSRFToken": "[^"]*"', "", re.sub(r'value="[^"]*"', "", page))

    assert without_tokens(text(taken)) == without_tokens(text(free))
    warning = sent_to(globex.owner.email)[0]
    assert "already" in warning.subject
    assert "/account/email/" not in warning.body
    assert User.objects.get(pk=acme.member.pk).email == acme.member.email


def test_the_name_is_changed_on_the_account_page(acme):
    client = acme.session_client(acme.member)

    client.post("/account/", {"action": "name", "full_name": "Mina Member"})

    assert User.objects.get(pk=acme.member.pk).full_name == "Mina Member"


def test_a_member_leaves_the_organisation(acme):
    client = acme.session_client(acme.member)

    response = client.post("/account/", {"action": "leave"})

    assert response.status_code == 302
    assert not Membership.objects.filter(tenant=acme.tenant, user=acme.member).exists()
    assert User.objects.filter(pk=acme.member.pk).exists()
    assert acme.client(acme.member_token).get("/api/documents/").status_code == 403


@pytest.mark.parametrize("path", ["/members/", "/account/", "/keys/"])
def test_team_pages_need_a_logged_in_member(acme, globex, path):
    anonymous = host_client(acme.host).get(path)
    stranger = acme.session_client(globex.member).get(path)

    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    assert stranger.status_code == 302 and stranger["Location"].startswith("/login/")
