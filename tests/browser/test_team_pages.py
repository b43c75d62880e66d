"""Teams in headless Chromium with real mail files: an invitation from the owner's page to the
newcomer's first page, a forgotten password, and finding one's workspace from the public site.

The live server runs in this process with TASK_MODE=eager, so the mail jobs run in the server's
own threads as each request's transaction commits (exactly when a worker would pick them up),
and Django's file backend writes each message to a temporary folder that the test reads.
"""

import email
import email.policy
import re
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tenants.models import Membership
from tests.browser.conftest import CHROMIUM
from tests.factories import PASSWORD
from tests.processes import wait_until

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium-headless-shell is not installed"),
]
NEW_PASSWORD = "Fresh-Passw0rd-42!"


@pytest.fixture
def mailbox(tmp_path, settings, asgi_server):
    """Mail as .eml files in a folder of this test; links point at the live server's port."""
    folder = tmp_path / "mail"
    settings.EMAIL_BACKEND = "core.platform.mail.EmlFileBackend"
    settings.EMAIL_FILE_PATH = str(folder)
    settings.PORT = asgi_server.port
    return folder


def wait_for_mail(folder: Path, to: str, timeout: float = 20) -> email.message.EmailMessage:
    def addressed() -> email.message.EmailMessage | None:
        for path in sorted(folder.glob("*.eml")) if folder.exists() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if message["To"] == to:
                return message
        return None

    return wait_until(addressed, timeout=timeout, what=f"a mail to {to} in {folder}")


def text_of(message: email.message.EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def link(message: email.message.EmailMessage, pattern: str) -> str:
    found = re.search(pattern, text_of(message))
    assert found, text_of(message)
    return found.group(0)


def fresh_tenant(asgi_server, subdomain: str) -> dict:
    """An organisation signed up through the live server (committed, its own for this test)."""
    response = httpx.post(
        f"{asgi_server.url}/api/signup/",
        json={
            "organisation": f"Team {subdomain}",
            "subdomain": subdomain,
            "email": f"owner@{subdomain}.test",
            "password": PASSWORD,
            "plan": "free",
        },
        headers={"Host": f"localhost:{asgi_server.port}"},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()


def log_in(page, base: str, email_address: str, password: str = PASSWORD) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", email_address)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_an_owner_invites_a_newcomer_who_sets_a_password_and_lands_in_the_workspace(
    browser,
    live_worlds,
    asgi_server,
    mailbox,
    unique_subdomain,  # noqa: F811
):
    tenant = fresh_tenant(asgi_server, unique_subdomain)
    base = asgi_server.host_url(unique_subdomain)
    newcomer = f"newcomer-{uuid.uuid4().hex[:6]}@example.com"

    owner = browser.new_context().new_page()
    log_in(owner, base, f"owner@{unique_subdomain}.test")
    expect(owner.get_by_role("heading", name="Upload a document")).to_be_visible()
    owner.click("nav >> text=Members")
    owner.fill("#invite-email", newcomer)
    owner.select_option("#invite-role", "member")
    owner.click("#invite button[type=submit]")
    expect(owner.locator(".flash")).to_contain_text(f"Invitation sent to {newcomer}")
    expect(owner.locator("#invitations")).to_contain_text(newcomer)

    message = wait_for_mail(mailbox, newcomer)
    assert tenant["tenant"]["name"] in message["Subject"]
    invite_link = link(message, rf"{re.escape(base)}/invite/[\w-]+/")

    person = browser.new_context().new_page()
    person.goto(invite_link)
    expect(person.get_by_role("heading", name=f"Join {tenant['tenant']['name']}")).to_be_visible()
    person.fill("#id_name", "Nico Newcomer")
    person.fill("#id_password", NEW_PASSWORD)
    person.fill("#id_password2", NEW_PASSWORD)
    person.click("button[type=submit]")

    expect(person).to_have_url(f"{base}/")
    expect(person.get_by_role("heading", name="Upload a document")).to_be_visible()
    expect(person.locator(".flash")).to_contain_text(f"Welcome to {tenant['tenant']['name']}")
    membership = Membership.objects.select_related("user").get(user__email=newcomer)
    assert membership.role == "member" and membership.tenant.subdomain == unique_subdomain
    assert membership.user.full_name == "Nico Newcomer"
    person.goto(invite_link)  # the link worked once
    expect(person.get_by_role("alert")).to_contain_text("already been used")
    owner.reload()
    expect(owner.locator("#members")).to_contain_text(newcomer)


def test_a_forgotten_password_is_reset_from_the_login_page(
    browser,
    live_worlds,
    asgi_server,
    mailbox,
    unique_subdomain,  # noqa: F811
):
    fresh_tenant(asgi_server, unique_subdomain)
    base = asgi_server.host_url(unique_subdomain)
    owner_email = f"owner@{unique_subdomain}.test"
    page = browser.new_context().new_page()

    page.goto(f"{base}/login/")
    page.click("#forgot-password")
    page.fill("#id_email", owner_email)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()

    reset_link = link(wait_for_mail(mailbox, owner_email), rf"{re.escape(base)}/reset/[\w-]+/[\w-]+/")
    page.goto(reset_link)
    expect(page).to_have_url(re.compile(r".*/set-password/$"))  # the token leaves the address bar
    page.fill("#id_new_password1", NEW_PASSWORD)
    page.fill("#id_new_password2", NEW_PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Your password has been changed")).to_be_visible()

    page.click("#login-link")
    log_in(page, base, owner_email, PASSWORD)
    expect(page.get_by_role("alert")).to_be_visible()  # the old password no longer works
    log_in(page, base, owner_email, NEW_PASSWORD)
    expect(page.get_by_role("heading", name="Upload a document")).to_be_visible()


def test_the_public_log_in_page_mails_the_list_of_workspaces(
    browser,
    live_worlds,
    asgi_server,
    mailbox,
    unique_subdomain,  # noqa: F811
):
    tenant = fresh_tenant(asgi_server, unique_subdomain)
    owner_email = f"owner@{unique_subdomain}.test"
    public = f"http://localhost:{asgi_server.port}"
    page = browser.new_context().new_page()

    page.goto(f"{public}/")
    page.click("#find-workspaces")  # "Forgot its address?" under "Log in to your workspace"
    page.fill("#id_email", owner_email)
    page.click("button[type=submit]")
    expect(page.locator("#mail-sent")).to_contain_text(owner_email)
    page.go_back()
    page.fill("#id_email", "nobody-here@example.com")
    page.click("button[type=submit]")
    expect(page.locator("#mail-sent")).to_contain_text("nobody-here@example.com")  # the same answer

    message = wait_for_mail(mailbox, owner_email)
    workspace = link(message, rf"{re.escape(asgi_server.host_url(unique_subdomain))}/login/")
    assert tenant["tenant"]["name"] in text_of(message)
    page.goto(workspace)
    expect(page.get_by_role("heading", name=f"Log in to {tenant['tenant']['name']}")).to_be_visible()
    assert not list(mailbox.glob("*.eml"))[1:], "no mail for an unknown address"
