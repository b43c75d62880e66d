"""Switching workspaces (issue 25 #22): a person in several organisations goes from one to another
signed in, by a one-time hand-off that is short-lived, bound to one person and one workspace, and
checked against a current membership; nobody sees or enters a workspace they are not a member of."""

from __future__ import annotations

import datetime as dt
import html
import re
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from django_tenants.utils import tenant_context

from core.models import User
from tenants.audit.models import Action, AuditEntry
from tenants.mfa.services import SSO_SESSION_KEY
from tenants.models import Membership, Tenant
from tenants.services.api_keys import api_key_create
from tenants.sso.models import SsoConfig
from tenants.switch.services import HANDOFF_MAX_AGE, workspace_handoff_issue
from tests.conftest import World, host_client


@pytest.fixture
def both(acme: World, globex: World) -> World:
    """acme's member is also a member of globex."""
    Membership.objects.create(user=acme.member, tenant=globex.tenant, role=Membership.Role.MEMBER)
    return acme


def switch(world: World, to: str):  # noqa: ANN202
    return world.session_client(world.member).post("/workspaces/switch/", {"workspace": to})


def onward(response) -> str:  # noqa: ANN001
    """Where the switch page sends the browser on (its script follows the link at once: a form's
    redirect to another host would be stopped by the page's Content-Security-Policy form-action)."""
    assert response.status_code == 200, response.status_code
    found = re.search(r'<a id="workspace-onward" href="([^"]+)"', response.content.decode())
    assert found, response.content.decode()
    return html.unescape(found.group(1))


def entries(tenant: Tenant, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(tenant_id=tenant.pk, action=action).order_by("id"))


def test_a_member_of_two_workspaces_switches_signed_in_and_the_hand_off_works_once(both, globex):
    target = urlsplit(onward(switch(both, "globex")))
    assert target.hostname == "globex.localhost" and target.path.startswith("/workspaces/enter/")
    browser = host_client(globex.host)
    entered = browser.get(target.path)
    assert entered.status_code == 302 and entered["Location"] == "/"
    assert browser.get("/account/").status_code == 200
    login = entries(globex.tenant, Action.LOGIN)[-1]
    assert login.actor_id == both.member.pk
    assert login.changes == {"method": "workspace_switch", "from": "acme"}

    again = host_client(globex.host).get(target.path)
    assert again.status_code == 302 and again["Location"] == "/login/"
    refused = entries(globex.tenant, Action.LOGIN_FAILED)[-1]
    assert refused.changes == {"method": "workspace_switch", "reason": "handoff_invalid"}
    assert both.member.email not in refused.actor_label


def test_an_expired_hand_off_lands_on_the_login_page(both, globex):
    issued = timezone.now() - dt.timedelta(seconds=HANDOFF_MAX_AGE + 1)
    url = workspace_handoff_issue(user=both.member, source=both.tenant, target=globex.tenant, at=issued)
    browser = host_client(globex.host)

    response = browser.get(urlsplit(url).path)

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert browser.get("/account/").status_code == 302
    assert entries(globex.tenant, Action.LOGIN_FAILED)[-1].changes["reason"] == "handoff_expired"


def test_a_hand_off_after_the_membership_ended_is_refused(both, globex):
    path = urlsplit(onward(switch(both, "globex"))).path
    Membership.objects.filter(user=both.member, tenant=globex.tenant).delete()
    browser = host_client(globex.host)

    response = browser.get(path)

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert browser.get("/account/").status_code == 302


def test_a_hand_off_for_one_workspace_does_not_sign_in_at_another(both, globex):
    path = urlsplit(onward(switch(both, "globex"))).path
    elsewhere = host_client(both.host)  # acme: the person is a member here too

    response = elsewhere.get(path)

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert elsewhere.get("/account/").status_code == 302
    # Refused where it was used, and still good where it was meant for.
    assert host_client(globex.host).get(path)["Location"] == "/"


def test_a_new_password_voids_a_hand_off(both, globex):
    path = urlsplit(onward(switch(both, "globex"))).path
    person = User.objects.get(pk=both.member.pk)  # never the session-wide world's own object
    person.set_password("another-long-password-7")
    person.save(update_fields=["password"])

    assert host_client(globex.host).get(path)["Location"] == "/login/"


def test_nobody_switches_to_or_sees_a_workspace_they_are_not_a_member_of(acme, globex):
    assert switch(acme, "globex").status_code == 404
    assert switch(acme, "no-such-workspace").status_code == 404

    page = acme.session_client(acme.member).get("/").content.decode()
    assert "Globex" not in page and 'action="/workspaces/switch/"' not in page
    body = acme.client(acme.member_token).get("/api/workspaces/").json()
    assert [w["subdomain"] for w in body["results"]] == ["acme"]


def test_the_navigation_lists_the_other_workspaces_of_a_member_of_several(both, globex):
    page = both.session_client(both.member).get("/").content.decode()

    assert 'action="/workspaces/switch/"' in page
    assert 'value="globex"' in page and globex.tenant.name in page


def test_my_workspaces_api_lists_each_membership_with_its_role_and_address(both, globex):
    Tenant.objects.filter(pk=globex.tenant.pk).update(name="Globex Research")

    body = both.client(both.member_token).get("/api/workspaces/").json()

    assert body["results"] == [
        {"name": both.tenant.name, "subdomain": "acme", "url": both.tenant.url, "role": "member", "current": True},
        {
            "name": "Globex Research",
            "subdomain": "globex",
            "url": globex.tenant.url,
            "role": "member",
            "current": False,
        },
    ]


def test_a_closed_workspace_is_neither_listed_nor_entered(both, globex):
    Tenant.objects.filter(pk=globex.tenant.pk).update(
        status=Tenant.Status.CLOSED, closed_at=timezone.now(), delete_after=timezone.now() + dt.timedelta(days=30)
    )

    body = both.client(both.member_token).get("/api/workspaces/").json()

    assert [w["subdomain"] for w in body["results"]] == ["acme"]
    assert switch(both, "globex").status_code == 404


def test_a_session_made_by_single_sign_on_goes_to_the_other_workspaces_login_page(both, globex):
    # One organisation's identity provider does not vouch for the person at another.
    client = both.session_client(both.member)
    with tenant_context(both.tenant):  # sessions live in the workspace's schema
        session = client.session
        session[SSO_SESSION_KEY] = True
        session.save()

    response = client.post("/workspaces/switch/", {"workspace": "globex"})

    assert onward(response) == f"{globex.tenant.url}login/"


def test_a_workspace_that_enforces_single_sign_on_is_entered_through_its_provider(both, globex):
    path = urlsplit(onward(switch(both, "globex"))).path
    SsoConfig.objects.create(
        tenant=globex.tenant, protocol="oidc", issuer="http://127.0.0.1:1/", client_id="c", enforced=True
    )

    assert onward(switch(both, "globex")) == f"{globex.tenant.url}login/"
    assert host_client(globex.host).get(path)["Location"] == "/login/"


def test_someone_already_signed_in_there_is_not_signed_in_again(both, globex):
    path = urlsplit(onward(switch(both, "globex"))).path
    browser = globex.session_client(both.member)
    logins = len(entries(globex.tenant, Action.LOGIN))

    assert browser.get(path)["Location"] == "/"
    assert len(entries(globex.tenant, Action.LOGIN)) == logins


def test_api_keys_have_no_workspaces(acme):
    _, key = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="Nightly", scope="read")
    client = host_client(acme.host)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    assert client.get("/api/workspaces/").status_code == 403
