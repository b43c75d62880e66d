import pytest

from tests.conftest import host_client
from tests.factories import PASSWORD, UserFactory


def login(host: str, email: str, password: str = PASSWORD):
    return host_client(host).post("/api/auth/login/", {"email": email, "password": password}, format="json")


def test_a_member_logs_in_with_email_and_gets_a_token(acme):
    response = login(acme.host, acme.member.email)

    assert response.status_code == 200
    assert response.json()["key"] == acme.member_token


def test_the_user_endpoint_shows_the_role_in_this_tenant(acme):
    response = acme.client(acme.owner_token).get("/api/auth/user/")

    assert response.json() == {"id": acme.owner.id, "email": acme.owner.email, "full_name": "", "role": "owner"}


def test_a_wrong_password_is_a_400(acme):
    response = login(acme.host, acme.member.email, "wrong-password")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Unable to log in with provided credentials."


def test_a_non_member_gets_the_same_answer_as_a_wrong_password(acme, globex):
    non_member = login(globex.host, acme.member.email)
    wrong_password = login(globex.host, globex.member.email, "wrong-password")

    assert non_member.status_code == wrong_password.status_code == 400
    assert non_member.json() == wrong_password.json()


def test_login_is_throttled(acme, settings):
    statuses = [login(acme.host, acme.member.email, "wrong-password").status_code for _ in range(10)]

    assert statuses[:9] == [400] * 9
    assert statuses[9] == 429
    assert login(acme.host, acme.member.email).status_code == 429


def test_logout_invalidates_the_session(acme):
    client = host_client(acme.host)
    assert (
        client.post("/api/auth/login/", {"email": acme.member.email, "password": PASSWORD}, format="json").status_code
        == 200
    )
    assert client.get("/api/documents/").status_code == 200

    assert client.post("/api/auth/logout/").status_code == 200
    assert client.get("/api/documents/").status_code == 401


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_enter_the_tenant_admin(acme, role):
    from tenants.models import Membership

    user = acme.owner if role == "owner" else UserFactory(email="admin@acme.test")
    if role == "admin":
        Membership.objects.create(user=user, tenant=acme.tenant, role=role)
    client = host_client(acme.host)

    response = client.post("/admin/login/?next=/admin/", {"username": user.email, "password": PASSWORD}, follow=True)

    assert response.status_code == 200
    assert response.request["PATH_INFO"] == "/admin/"
    assert b"Memberships" in response.content


def test_members_cannot_enter_the_tenant_admin(acme):
    client = host_client(acme.host)

    response = client.post("/admin/login/?next=/admin/", {"username": acme.member.email, "password": PASSWORD})

    assert response.status_code == 200  # the form again, with an error
    assert b"Only owners and admins" in response.content


def test_one_tenants_owner_cannot_enter_another_tenants_admin(acme, globex):
    refused = host_client(globex.host).post(
        "/admin/login/?next=/admin/", {"username": acme.owner.email, "password": PASSWORD}
    )
    assert b"Please enter the correct email" in refused.content  # as for a wrong password

    client = globex.session_client(acme.owner)
    assert client.get("/admin/").status_code == 302  # logged in, yet sent back to the login page


def test_the_tenant_admin_lists_only_its_own_members(acme, globex):
    client = acme.session_client(acme.owner)

    page = client.get("/admin/tenants/membership/").content

    assert acme.member.email.encode() in page
    assert globex.member.email.encode() not in page


def test_platform_operators_see_member_counts_and_search(acme, globex, django_user_model):
    operator = django_user_model.objects.create_superuser("ops@example.com", "ops-Passw0rd!")
    client = host_client("localhost")
    client.force_login(operator)

    listing = client.get("/admin/tenants/tenant/?q=globex")

    assert listing.status_code == 200
    assert b"Globex" in listing.content
    assert b"Acme" not in listing.content
    assert listing.context["cl"].result_list[0].member_count == 2


def test_tenant_members_cannot_use_the_operator_admin(acme):
    client = host_client("localhost")
    client.force_login(acme.owner)

    assert client.get("/admin/").status_code == 302


def test_platform_superusers_may_enter_any_tenant_admin(acme, django_user_model):
    operator = django_user_model.objects.create_superuser("root@example.com", "ops-Passw0rd!")

    assert acme.session_client(operator).get("/admin/").status_code == 200
