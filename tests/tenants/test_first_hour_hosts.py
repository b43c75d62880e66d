"""Hosts (issue 25 #17): a workspace's address in upper case is still that workspace, and a password
reset link works on the host it was sent for only."""

from tenants.models import Membership
from tests.conftest import host_client
from tests.tenants.conftest import link_in, sent_to


def test_an_upper_case_host_is_the_same_workspace(acme):
    response = host_client("ACME.LocalHost").get("/login/")

    assert response.status_code == 200
    assert b"Acme" in response.content


def test_a_reset_link_works_only_on_the_host_it_was_sent_for(acme, globex, jobs):
    Membership.objects.create(user=acme.member, tenant=globex.tenant, role=Membership.Role.MEMBER)
    with jobs():
        host_client(acme.host).post("/api/auth/password/reset/", {"email": acme.member.email}, format="json")
    path = link_in(sent_to(acme.member.email)[0], r"http://acme\.localhost:8000/reset/[\w-]+/[\w-]+/")
    path = path.removeprefix("http://acme.localhost:8000")

    elsewhere = host_client(globex.host).get(path)
    here = host_client(acme.host).get(path)

    assert elsewhere.status_code == 200 and b"This link cannot be used" in elsewhere.content
    assert here.status_code == 302 and here["Location"].endswith("/set-password/")
