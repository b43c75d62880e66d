"""Roles through one service: only owners make owners, nobody raises themself, the last owner stays;
the API, the members page and the tenant admin's forms all obey it."""

import pytest

from tenants.models import Membership
from tests.conftest import host_client
from tests.factories import PASSWORD, UserFactory


def membership(world, user):
    return Membership.objects.get(tenant=world.tenant, user=user)


def change_role(world, token, target, role):
    return world.client(token).patch(f"/api/members/{membership(world, target).id}/", {"role": role}, format="json")


def remove(world, token, target):
    return world.client(token).delete(f"/api/members/{membership(world, target).id}/")


def test_members_list_their_colleagues(acme, globex):
    response = acme.client(acme.member_token).get("/api/members/")

    assert response.status_code == 200
    rows = {row["user"]["email"]: row["role"] for row in response.json()["results"]}
    assert rows == {acme.owner.email: "owner", acme.member.email: "member"}


def test_an_owner_makes_another_owner_and_then_steps_down(acme):
    assert change_role(acme, acme.owner_token, acme.member, "owner").status_code == 200
    stepped_down = change_role(acme, acme.owner_token, acme.owner, "member")

    assert stepped_down.status_code == 200
    assert membership(acme, acme.owner).role == "member"
    assert membership(acme, acme.member).role == "owner"


@pytest.mark.parametrize("action", ["demote", "remove", "leave"])
def test_the_last_owner_stays(acme, action):
    if action == "demote":
        response = change_role(acme, acme.owner_token, acme.owner, "admin")
    elif action == "remove":
        response = remove(acme, acme.owner_token, acme.owner)
    else:
        client = acme.session_client(acme.owner)
        response = client.post("/account/", {"action": "leave"}, follow=True)
        assert b"The last owner cannot leave" in response.content
        assert membership(acme, acme.owner).role == "owner"
        return

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "last_owner"
    assert membership(acme, acme.owner).role == "owner"


def test_an_admin_cannot_make_themself_or_anyone_an_owner(acme, new_member):
    admin, admin_token = new_member(acme, role="admin")

    themself = change_role(acme, admin_token, admin, "owner")
    someone = change_role(acme, admin_token, acme.member, "owner")

    assert themself.status_code == someone.status_code == 403
    assert themself.json()["error"]["code"] == "owner_required"
    assert membership(acme, admin).role == "admin"
    assert membership(acme, acme.member).role == "member"


def test_an_admin_cannot_demote_or_remove_the_owner(acme, new_member):
    _, admin_token = new_member(acme, role="admin")

    demoted = change_role(acme, admin_token, acme.owner, "member")
    removed = remove(acme, admin_token, acme.owner)

    assert demoted.status_code == removed.status_code == 403
    assert membership(acme, acme.owner).role == "owner"


def test_an_admin_manages_members(acme, new_member):
    _, admin_token = new_member(acme, role="admin")

    promoted = change_role(acme, admin_token, acme.member, "admin")
    removed = remove(acme, admin_token, acme.member)

    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    assert removed.status_code == 204
    assert not Membership.objects.filter(tenant=acme.tenant, user=acme.member).exists()
    assert acme.client(acme.member_token).get("/api/documents/").status_code == 403


def test_members_cannot_change_roles_or_raise_themselves(acme):
    themself = change_role(acme, acme.member_token, acme.member, "admin")
    others = remove(acme, acme.member_token, acme.owner)

    assert themself.status_code == others.status_code == 403
    assert membership(acme, acme.member).role == "member"


def test_another_tenants_membership_is_not_found(acme, globex):
    response = acme.client(acme.owner_token).patch(
        f"/api/members/{membership(globex, globex.member).id}/", {"role": "admin"}, format="json"
    )

    assert response.status_code == 404
    assert membership(globex, globex.member).role == "member"


def test_an_unknown_role_is_a_400(acme):
    response = change_role(acme, acme.owner_token, acme.member, "emperor")

    assert response.status_code == 400


# --- The members page ----------------------------------------------------------------------------


def test_the_members_page_lets_an_admin_invite_but_not_make_owners(acme, new_member, jobs):
    admin, _ = new_member(acme, role="admin")
    client = acme.session_client(admin)

    page = client.get("/members/").content.decode()
    with jobs():
        invited = client.post("/members/", {"action": "invite", "email": "pagenew@example.com", "role": "member"})
    raised = client.post(
        "/members/", {"action": "role", "id": membership(acme, admin).id, "role": "owner"}, follow=True
    )

    assert 'value="owner"' not in page
    assert "Only owners change owners" in page  # the owner's row has no controls for an admin
    assert invited.status_code == 302
    assert Membership.objects.get(tenant=acme.tenant, user=admin).role == "admin"
    assert b"Only owners can make someone an owner." in raised.content


def test_members_see_the_page_but_cannot_post_to_it(acme):
    client = acme.session_client(acme.member)

    assert client.get("/members/").status_code == 200
    assert client.post("/members/", {"action": "remove", "id": membership(acme, acme.owner).id}).status_code == 403


# --- The tenant admin's membership pages (issue 10) -----------------------------------------------


def admin_client(acme, new_member):
    admin, _ = new_member(acme, role="admin")
    return admin, acme.session_client(admin)


def test_a_tenant_admin_cannot_make_themself_owner_in_the_tenant_admin(acme, new_member):
    admin, client = admin_client(acme, new_member)

    response = client.post(f"/admin/tenants/membership/{membership(acme, admin).id}/change/", {"role": "owner"})

    assert response.status_code == 200  # the form again, with the refusal
    assert membership(acme, admin).role == "admin"


def test_a_tenant_admin_cannot_demote_the_real_owner_in_the_tenant_admin(acme, new_member):
    _, client = admin_client(acme, new_member)
    url = f"/admin/tenants/membership/{membership(acme, acme.owner).id}/change/"

    page = client.get(url)
    response = client.post(url, {"role": "member"})

    assert b'name="role"' not in page.content  # read-only for an admin
    assert response.status_code == 403
    assert membership(acme, acme.owner).role == "owner"
    assert (
        client.post(f"/admin/tenants/membership/{membership(acme, acme.owner).id}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert membership(acme, acme.owner).role == "owner"


def test_the_membership_form_lists_nothing_of_other_tenants(acme, globex, new_member):
    _, client = admin_client(acme, new_member)

    page = client.get(f"/admin/tenants/membership/{membership(acme, acme.member).id}/change/").content.decode()

    assert 'name="tenant"' not in page
    assert "Globex" not in page and "globex" not in page
    assert 'value="owner"' not in page  # an admin is not offered owner


def test_an_owner_changes_roles_in_the_tenant_admin(acme):
    client = acme.session_client(acme.owner)

    response = client.post(f"/admin/tenants/membership/{membership(acme, acme.member).id}/change/", {"role": "admin"})

    assert response.status_code == 302
    assert membership(acme, acme.member).role == "admin"


def test_the_last_owner_cannot_be_demoted_in_the_tenant_admin(acme):
    client = acme.session_client(acme.owner)

    response = client.post(f"/admin/tenants/membership/{membership(acme, acme.owner).id}/change/", {"role": "admin"})

    assert response.status_code == 200
    assert b"last owner" in response.content
    assert membership(acme, acme.owner).role == "owner"


def test_the_tenant_admin_invites_instead_of_adding_and_reveals_no_account(acme, globex, jobs):
    client = acme.session_client(acme.owner)

    assert client.get("/admin/tenants/membership/add/").status_code == 403
    with jobs():
        existing = client.post("/admin/tenants/invitation/add/", {"email": globex.member.email, "role": "member"})
        unknown = client.post("/admin/tenants/invitation/add/", {"email": "nobody@example.com", "role": "member"})

    assert existing.status_code == unknown.status_code == 302
    assert existing["Location"] == unknown["Location"]
    assert not Membership.objects.filter(tenant=acme.tenant, user=globex.member).exists()  # invited, not added
    listing = client.get("/admin/tenants/invitation/").content.decode()
    assert globex.member.email in listing and "nobody@example.com" in listing


def test_an_admin_cannot_invite_an_owner_in_the_tenant_admin(acme, new_member):
    _, client = admin_client(acme, new_member)

    response = client.post("/admin/tenants/invitation/add/", {"email": "boss@example.com", "role": "owner"})

    assert response.status_code == 200
    assert b"Only owners can make someone an owner." in response.content


def test_a_member_removed_in_the_tenant_admin_loses_access(acme):
    newcomer = UserFactory(email="leaver@example.com")
    Membership.objects.create(user=newcomer, tenant=acme.tenant, role="member")
    client = acme.session_client(acme.owner)

    response = client.post(f"/admin/tenants/membership/{membership(acme, newcomer).id}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert (
        host_client(acme.host)
        .post("/api/auth/login/", {"email": newcomer.email, "password": PASSWORD}, format="json")
        .status_code
        == 400  # the answer of a wrong password: a non-member learns nothing (tenants.backends)
    )
