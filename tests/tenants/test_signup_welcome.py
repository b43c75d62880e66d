"""Signup's login link: it logs the new owner in on the new workspace's host, once, and nowhere else."""

from urllib.parse import urlsplit

from tests.conftest import host_client
from tests.factories import PASSWORD


def signed_up(public_client, subdomain: str) -> dict:
    payload = {
        "organisation": "Welcome Ltd",
        "name": "Wendy Welcome",
        "subdomain": subdomain,
        "email": f"wendy@{subdomain}.test",
        "password": PASSWORD,
        "plan": "free",
    }
    response = public_client.post("/api/signup/", payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_the_link_logs_the_owner_in_once(public_client, unique_subdomain):
    body = signed_up(public_client, unique_subdomain)
    link = urlsplit(body["login_url"])
    assert link.hostname == f"{unique_subdomain}.localhost"
    client = host_client(f"{unique_subdomain}.localhost")

    first = client.get(link.path)
    assert first.status_code == 302 and first["Location"] == "/"
    assert client.get("/account/").status_code == 200

    again = host_client(f"{unique_subdomain}.localhost").get(link.path)
    assert again.status_code == 302 and again["Location"] == "/login/"


def test_the_link_does_not_work_on_another_workspace(public_client, unique_subdomain, acme):
    body = signed_up(public_client, unique_subdomain)
    client = host_client(acme.host)

    response = client.get(urlsplit(body["login_url"]).path)

    assert response.status_code == 302 and response["Location"] == "/login/"
    assert client.get("/account/").status_code == 302
