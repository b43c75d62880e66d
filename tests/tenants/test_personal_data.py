"""A person's data: the export mailed as a link holds exactly their own data; deleting the account
erases their conversations in every workspace, keeps documents (a former member) and the ledger
totals; the last owner is refused; the operators' admin deletes through the same path."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass

import pytest
from django.db.models import Sum
from django.utils import timezone
from django_tenants.utils import tenant_context
from rest_framework.authtoken.models import Token

from ai.llm import Usage
from ai.models import AgentAction, Conversation, Document, Message
from billing.models import UsageEvent
from billing.services import usage_record
from config.personal_data import account_delete
from core.models import User
from tenants.audit.models import AuditEntry
from tenants.models import Membership
from tests.conftest import World, host_client
from tests.factories import PASSWORD, UserFactory
from tests.tenants.conftest import link_in, sent_to


@dataclass
class Seeded:
    conversation_id: int
    document_id: int
    action_id: int


def seed(world: World, user: User, marker: str) -> Seeded:
    """A conversation (question and answer), a document and a chat call with its usage, all the
    person's, each carrying ``marker`` so that an export can be searched for it."""
    with tenant_context(world.tenant):
        conversation = Conversation.objects.create(title=f"talk {marker}", user=user)
        action = AgentAction.objects.create(
            agent_type=AgentAction.AgentType.CHAT,
            user=user,
            input_prompt=f"question {marker}",
            output_text=f"answer {marker}",
            input_tokens=100,
            output_tokens=20,
            conversation=conversation,
        )
        Message.objects.create(conversation=conversation, role=Message.Role.USER, content=f"question {marker}")
        Message.objects.create(
            conversation=conversation, role=Message.Role.ASSISTANT, content=f"answer {marker}", agent_action=action
        )
        document = Document.objects.create(title=f"notes {marker}", content=f"text {marker}", created_by=user)
    usage_record(
        user_id=user.pk,
        feature="chat",
        model="claude-test",
        usage=Usage(input_tokens=100, output_tokens=20),
        request_key=f"action:{action.pk}:{marker}",
        tenant_id=world.tenant.pk,
    )
    return Seeded(conversation.pk, document.pk, action.pk)


@pytest.fixture
def person(acme, globex) -> User:  # noqa: ANN001
    """A member of both workspaces."""
    user = UserFactory(email="person@example.com", full_name="Pat Person")
    Membership.objects.create(user=user, tenant=acme.tenant, role=Membership.Role.MEMBER)
    Membership.objects.create(user=user, tenant=globex.tenant, role=Membership.Role.ADMIN)
    return user


@pytest.fixture(autouse=True)
def _exports_in_tmp(settings, tmp_path) -> None:  # noqa: ANN001
    settings.EXPORTS_DIR = str(tmp_path / "exports")


def _ledger_totals(*worlds: World) -> dict[str, int]:
    return {
        w.tenant.subdomain: UsageEvent.objects.for_tenant(w.tenant).aggregate(t=Sum("total_tokens"))["t"] or 0
        for w in worlds
    }


def test_account_export_contains_exactly_the_persons_own_data(acme, globex, person, jobs):
    seed(acme, person, "PERSON-ACME")
    seed(globex, person, "PERSON-GLOBEX")
    seed(acme, acme.member, "OTHER-ACME")
    seed(globex, globex.owner, "OTHER-GLOBEX")
    client = acme.session_client(person)

    with jobs():
        response = client.post("/api/account/export/")

    assert response.status_code == 202
    (message,) = sent_to(person.email)
    link = link_in(message, r"http://acme\.localhost[^\s\"]*/downloads/[^\s\"/]+/")
    download = client.get(link.split("localhost:8000", 1)[-1].split("localhost", 1)[-1])
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    files = {name: json.loads(archive.read(name)) for name in archive.namelist()}
    everything = json.dumps(files)

    assert files["profile.json"]["email"] == person.email
    assert sorted(m["workspace"] for m in files["memberships.json"]) == ["acme", "globex"]
    for world, marker in ((acme, "PERSON-ACME"), (globex, "PERSON-GLOBEX")):
        folder = f"workspaces/{world.tenant.subdomain}"
        (conversation,) = files[f"{folder}/conversations.json"]
        assert [m["content"] for m in conversation["messages"]] == [f"question {marker}", f"answer {marker}"]
        (document,) = files[f"{folder}/documents.json"]
        assert document["content"] == f"text {marker}"
        (usage,) = files[f"{folder}/usage.json"]
        assert usage["total_tokens"] == 120
    assert "OTHER-" not in everything
    assert acme.member.email not in everything and globex.owner.email not in everything
    assert AuditEntry.objects.filter(tenant_id=acme.tenant.pk, action="account.exported").exists()


def test_an_export_link_opens_for_its_person_only(acme, person, jobs):
    with jobs():
        acme.session_client(person).post("/api/account/export/")
    link = link_in(sent_to(person.email)[0], r"/downloads/[^\s\"/]+/")

    assert acme.session_client(acme.member).get(link).status_code == 404
    assert acme.session_client(person).get(link.replace("/downloads/", "/downloads/x")).status_code == 404
    assert host_client(acme.host).get(link).status_code == 302  # to the login page


def test_expired_export_link_is_gone(acme, person, jobs, settings):
    with jobs():
        acme.session_client(person).post("/api/account/export/")
    link = link_in(sent_to(person.email)[0], r"/downloads/[^\s\"/]+/")
    settings.EXPORT_LINK_MAX_AGE = -1

    response = acme.session_client(person).get(link)

    assert response.status_code == 410
    assert b"expired" in response.content


def test_account_deletion_erases_messages_everywhere_keeps_documents_and_ledger(acme, globex, person):
    mine = {w.tenant.subdomain: seed(w, person, f"P-{w.tenant.subdomain}") for w in (acme, globex)}
    theirs = seed(acme, acme.member, "OTHER")
    totals = _ledger_totals(acme, globex)
    token = Token.objects.create(user=person).key

    response = acme.client(token).delete("/api/account/", {"password": PASSWORD}, format="json")

    assert response.status_code == 204
    assert not User.objects.filter(pk=person.pk).exists()
    for world in (acme, globex):
        seeded = mine[world.tenant.subdomain]
        with tenant_context(world.tenant):
            assert not Conversation.objects.filter(pk=seeded.conversation_id).exists()
            assert not Message.objects.filter(conversation_id=seeded.conversation_id).exists()
            document = Document.objects.get(pk=seeded.document_id)
            assert document.created_by_id is None
            action = AgentAction.objects.get(pk=seeded.action_id)
            assert (action.user_id, action.input_prompt, action.output_text) == (None, "", "")
            assert action.input_tokens == 100  # the counts stay
    with tenant_context(acme.tenant):
        assert Message.objects.filter(conversation_id=theirs.conversation_id).count() == 2
    assert _ledger_totals(acme, globex) == totals
    assert not UsageEvent.objects.filter(
        request_key__startswith=f"action:{mine['acme'].action_id}:P-", user__isnull=False
    )
    page = acme.session_client(acme.member).get(f"/documents/{mine['acme'].document_id}/")
    assert "by a former member" in page.content.decode()
    assert acme.client(token).get("/api/documents/").status_code == 401
    entry = AuditEntry.objects.get(tenant_id=globex.tenant.pk, action="account.deleted")
    assert entry.actor_label == "a former member" and person.email not in json.dumps(entry.changes or {})


def test_account_deletion_needs_the_password(acme, person):
    seeded = seed(acme, person, "KEEP")

    response = acme.session_client(person).delete("/api/account/", {"password": "wrong"}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "wrong_password"
    with tenant_context(acme.tenant):
        assert Conversation.objects.filter(pk=seeded.conversation_id).exists()


def test_last_owner_cannot_delete_their_account(acme):
    response = acme.client(acme.owner_token).delete("/api/account/", {"password": PASSWORD}, format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "last_owner"
    assert "hand over ownership or close the workspace first" in error["message"]
    assert User.objects.filter(pk=acme.owner.pk).exists()


def test_an_owner_with_another_owner_can_delete_their_account(acme):
    Membership.objects.filter(user=acme.member, tenant=acme.tenant).update(role=Membership.Role.OWNER)

    response = acme.client(acme.owner_token).delete("/api/account/", {"password": PASSWORD}, format="json")

    assert response.status_code == 204


@pytest.fixture
def operator_client(django_user_model):  # noqa: ANN001
    operator = django_user_model.objects.create_superuser("ops@example.com", "ops-Passw0rd!")
    client = host_client("localhost")
    client.force_login(operator)
    return client


@pytest.mark.parametrize("with_data", [False, True])
def test_operator_deletes_a_user_in_the_admin(acme, globex, person, operator_client, with_data):
    seeded = seed(acme, person, "ADMIN") if with_data else None
    totals = _ledger_totals(acme, globex)

    confirm = operator_client.get(f"/admin/core/user/{person.pk}/delete/")
    response = operator_client.post(f"/admin/core/user/{person.pk}/delete/", {"post": "yes"})

    assert confirm.status_code == 200
    assert response.status_code == 302
    assert not User.objects.filter(pk=person.pk).exists()
    assert _ledger_totals(acme, globex) == totals
    if seeded is not None:
        with tenant_context(acme.tenant):
            assert not Conversation.objects.filter(pk=seeded.conversation_id).exists()
            assert Document.objects.get(pk=seeded.document_id).created_by_id is None
        entry = AuditEntry.objects.get(tenant_id=acme.tenant.pk, action="account.deleted")
        assert entry.actor_type == "operator"


def test_operator_admin_refuses_to_delete_a_last_owner(acme, operator_client):
    response = operator_client.get(f"/admin/core/user/{acme.owner.pk}/delete/", follow=True)

    assert "hand over ownership or close the workspace first" in response.content.decode()
    assert User.objects.filter(pk=acme.owner.pk).exists()


def test_the_account_page_downloads_data_and_deletes_the_account(acme, person, jobs):
    client = acme.session_client(person)
    assert "Download my data" in client.get("/account/").content.decode()

    with jobs():
        exported = client.post("/account/export/")
    refused = client.post("/account/delete/", {"password": "wrong"}, follow=True)
    deleted = client.post("/account/delete/", {"password": PASSWORD})

    assert exported.status_code == 302 and sent_to(person.email)
    assert "The password is not right." in refused.content.decode()
    assert deleted.status_code == 302 and deleted["Location"] == "/login/"
    assert not User.objects.filter(pk=person.pk).exists()


def test_the_account_page_tells_a_last_owner_why_not(acme):
    response = acme.session_client(acme.owner).post("/account/delete/", {"password": PASSWORD}, follow=True)

    assert "hand over ownership or close the workspace first" in response.content.decode()
    assert User.objects.filter(pk=acme.owner.pk).exists()


def test_deletion_and_export_reach_workspaces_the_person_has_left(acme, globex, person, jobs):
    seeded = seed(globex, person, "LEFT-BEHIND")
    Membership.objects.filter(user=person, tenant=globex.tenant).delete()

    with jobs():
        acme.session_client(person).post("/api/account/export/")
    link = link_in(sent_to(person.email)[0], r"/downloads/[^\s\"/]+/")
    download = acme.session_client(person).get(link)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    account_delete(user=person, password=PASSWORD)

    assert "LEFT-BEHIND" in archive.read("workspaces/globex/conversations.json").decode()
    with tenant_context(globex.tenant):
        assert not Conversation.objects.filter(pk=seeded.conversation_id).exists()


def test_a_person_without_a_password_deletes_their_account_right_after_signing_in(acme, person):
    person.set_unusable_password()
    person.save(update_fields=["password"])
    token = Token.objects.create(user=person).key
    session = acme.session_client(person)  # signs in now

    by_token = acme.client(token).delete("/api/account/", {}, format="json")
    User.objects.filter(pk=person.pk).update(last_login=timezone.now() - dt.timedelta(hours=1))
    stale = session.delete("/api/account/", {}, format="json")
    User.objects.filter(pk=person.pk).update(last_login=timezone.now())
    # A member of globex too: acme's identity provider does not vouch for the globex side.
    elsewhere = session.delete("/api/account/", {}, format="json")
    Membership.objects.filter(user=person).exclude(tenant=acme.tenant).delete()
    fresh = session.delete("/api/account/", {}, format="json")

    assert by_token.status_code == stale.status_code == elsewhere.status_code == 403
    assert stale.json()["error"]["code"] == elsewhere.json()["error"]["code"] == "reauthentication_required"
    assert fresh.status_code == 204
    assert not User.objects.filter(pk=person.pk).exists()
