"""A workspace exported and imported into a new tenant comes back equal, table by table and file by
file (embeddings and original uploads included); a damaged archive is refused; an owner can ask
for the export from the billing page."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context
from psycopg import sql

from ai.access import reader_of
from ai.llm import Usage
from ai.models import AgentAction, Chunk, Conversation, Document, DocumentUpload, Message
from ai.services.documents import document_create
from billing.models import Subscription, TenantUsagePeriod, UsageEvent
from billing.services import usage_record
from config.personal_data import account_delete
from config.tenant_archive import archive_models, archive_verify, reference_columns
from core.models import User
from tenants.models import ApiKey, Invitation, Membership, Tenant
from tenants.services.api_keys import api_key_create
from tests.conftest import World
from tests.factories import UserFactory
from tests.tenants.conftest import link_in, sent_to


@pytest.fixture(autouse=True)
def _exports_in_tmp(settings, tmp_path) -> None:  # noqa: ANN001
    settings.EXPORTS_DIR = str(tmp_path / "exports")


def _workspace_filled(world: World, ingest: Any) -> User:
    """Documents (one embedded, one upload still waiting for its job), a conversation, a key's call,
    usage, an invitation, and a member who will have left by the time the archive is imported."""
    leaver = UserFactory(email="leaver@example.com", full_name="Lee Leaver")
    Membership.objects.create(user=leaver, tenant=world.tenant, role=Membership.Role.MEMBER)
    api_key, _ = api_key_create(tenant=world.tenant, created_by=world.owner, name="ci", scope="write")
    Invitation.objects.create(
        tenant=world.tenant,
        email="new@example.com",
        role="admin",
        invited_by=world.owner,
        token_hash="f" * 64,
        expires="2030-01-01T00:00:00Z",
    )
    with tenant_context(world.tenant):
        with ingest():
            document_create(
                user=world.owner,
                reader=reader_of(tenant=world.tenant, user=world.owner),
                title="Handbook",
                content="Holidays are 25 days. " * 80,
            )
        document_create(
            user=leaver,
            reader=reader_of(tenant=world.tenant, user=leaver),
            upload=SimpleUploadedFile("minutes.txt", "Minutes — of the meeting\n\\N \\. end".encode(), "text/plain"),
        )
        conversation = Conversation.objects.create(title="Question", user=leaver)
        action = AgentAction.objects.create(
            agent_type="chat", user=api_key.user, api_key=api_key, input_prompt="q", output_text="a", input_tokens=9
        )
        Message.objects.create(conversation=conversation, role="user", content="How many holidays?\nTab\there")
        Message.objects.create(
            conversation=conversation, role="assistant", content="25", sources=[{"id": 1}], agent_action=action
        )
    usage_record(
        user_id=api_key.user_id,
        api_key_id=api_key.pk,
        feature="chat",
        model="claude-test",
        usage=Usage(input_tokens=9, output_tokens=1),
        request_key=f"action:{action.pk}",
        tenant_id=world.tenant.pk,
    )
    usage_record(
        user_id=leaver.pk,
        feature="chat",
        model="claude-test",
        usage=Usage(input_tokens=5, output_tokens=5),
        request_key="action:leaver",
        tenant_id=world.tenant.pk,
    )
    return leaver


def _schema_rows(tenant: Tenant) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every archived table as text (vectors included), ordered by primary key, with
    references to people as their e-mail and to keys as their name (those ids change on import)."""
    emails = dict(User.objects.values_list("id", "email"))
    emails |= {user_id: f"key {name}" for user_id, name in ApiKey.objects.values_list("user_id", "name")}
    keys = dict(ApiKey.objects.values_list("id", "name"))
    tables = {}
    with connection.cursor() as cursor:
        for model in [*archive_models(), DocumentUpload]:
            columns = [field.column for field in model._meta.concrete_fields]
            references = reference_columns(model)
            selected = [
                sql.SQL("md5({})").format(sql.Identifier(c))
                if c == "data"
                else sql.SQL("{}::text").format(sql.Identifier(c))
                for c in columns
            ]
            cursor.execute(
                sql.SQL("SELECT {} FROM {}.{} ORDER BY {}")
                .format(
                    sql.SQL(", ").join(selected),
                    sql.Identifier(tenant.schema_name),
                    sql.Identifier(model._meta.db_table),
                    sql.Identifier(model._meta.pk.column),
                )
                .as_string(cursor.connection)
            )
            rows = []
            for row in cursor.fetchall():
                named = dict(zip(columns, row, strict=True))
                for column, kind in references.items():
                    if named[column] is not None:
                        named[column] = (emails if kind == "user" else keys)[int(named[column])]
                rows.append(tuple(named.items()))
            tables[model._meta.db_table] = rows
    return tables


def _public_rows(tenant: Tenant) -> dict[str, Any]:
    def person(user_id: int | None) -> str | None:
        return User.objects.get(pk=user_id).email if user_id else None

    def key(key_id: int | None) -> str | None:
        return ApiKey.objects.get(pk=key_id).name if key_id else None

    usage = [
        {
            **row,
            "user_id": person(row["user_id"]) if row["api_key_id"] is None else "key",
            "api_key_id": key(row["api_key_id"]),
        }
        for row in UsageEvent.objects.for_tenant(tenant).order_by("created", "id").values()
    ]
    for row in usage:
        del row["id"], row["tenant_id"]
    return {
        "members": sorted(
            (m.user.email, m.user.full_name, m.role, m.created)
            for m in Membership.objects.for_tenant(tenant).select_related("user")
        ),
        "keys": [
            (k.name, k.scope, person(k.created_by_id), k.created, k.last_used)
            for k in ApiKey.objects.for_tenant(tenant).order_by("created")
        ],
        "invitations": [
            (i.email, i.role, person(i.invited_by_id), i.created, i.expires, i.sent_at, i.accepted_at, i.revoked_at)
            for i in Invitation.objects.for_tenant(tenant).order_by("created")
        ],
        "usage": usage,
        "periods": list(
            TenantUsagePeriod.objects.for_tenant(tenant).values("period_start", "tokens_used", "cost_micros")
        ),
        "plan": Subscription.objects.for_tenant(tenant).get().plan.slug,
    }


def _manifest(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        return archive_verify(archive)


def test_export_then_import_round_trip_is_equal(acme, ingest, tmp_path):
    leaver = _workspace_filled(acme, ingest)
    with tenant_context(acme.tenant):
        assert Chunk.objects.filter(embedding__isnull=False).exists() and DocumentUpload.objects.exists()
    Subscription.objects.for_tenant(acme.tenant).update(
        stripe_customer_id="cus_acme",
        stripe_subscription_id="sub_acme",
        status="past_due",
        past_due_since=timezone.now(),
    )
    before_schema, before_public = _schema_rows(acme.tenant), _public_rows(acme.tenant)
    path = tmp_path / "acme.zip"

    call_command("tenant_export", "acme", str(path), stdout=io.StringIO())
    account_delete(user=leaver, operator=acme.owner)  # gone from this database: the import makes a new account
    call_command("tenant_import", str(path), subdomain="acme-copy", stdout=io.StringIO())

    copy = Tenant.objects.get(subdomain="acme-copy")
    assert copy.status == Tenant.Status.ACTIVE
    assert _schema_rows(copy) == before_schema
    after_public = _public_rows(copy)
    assert after_public == before_public
    # The copy is not billed through the original's Stripe customer, and has nothing past due.
    subscription = Subscription.objects.for_tenant(copy).get()
    assert (subscription.stripe_customer_id, subscription.status, subscription.past_due_since) == ("", "", None)
    recreated = User.objects.get(email="leaver@example.com")
    assert recreated.pk != leaver.pk and not recreated.has_usable_password()
    # Keys come back revoked, with new prefixes and no secret.
    for api_key in ApiKey.objects.for_tenant(copy):
        assert api_key.revoked is not None and api_key.hashed_key == ""
    assert not ApiKey.objects.for_tenant(copy).filter(
        prefix__in=ApiKey.objects.for_tenant(acme.tenant).values("prefix")
    )
    assert set(Invitation.objects.for_tenant(copy).values_list("token_hash", flat=True)) == {""}

    # Exported again, the copy gives the same files: byte for byte wherever no id had to change.
    again = tmp_path / "copy.zip"
    call_command("tenant_export", "acme-copy", str(again), stdout=io.StringIO())
    first, second = _manifest(path), _manifest(again)
    assert first["tables"] == second["tables"] and first["files"].keys() == second["files"].keys()
    remapped = {f"schema/{m._meta.db_table}.copy" for m in archive_models() if reference_columns(m)}
    remapped.add("public.json")
    same = {name: digest for name, digest in first["files"].items() if name not in remapped}
    assert same == {name: second["files"][name] for name in same}
    assert "schema/ai_chunk.copy" in same and any(name.startswith("uploads/") for name in same)


def _rewritten(source: Path, target: Path, *, name: str, change: Any) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.namelist():
            data = old.read(item)
            new.writestr(item, change(data) if item == name else data)


def test_a_damaged_archive_is_refused(acme, tmp_path):
    path, damaged = tmp_path / "acme.zip", tmp_path / "damaged.zip"
    with tenant_context(acme.tenant):
        Document.objects.create(title="t", content="one two three", created_by=acme.owner)
    call_command("tenant_export", "acme", str(path), stdout=io.StringIO())
    _rewritten(path, damaged, name="schema/ai_document.copy", change=lambda data: data.replace(b"one", b"ONE"))

    with pytest.raises(CommandError, match="Checksum mismatch for schema/ai_document.copy"):
        call_command("tenant_import", str(damaged), subdomain="acme-bad", stdout=io.StringIO())

    assert not Tenant.objects.filter(subdomain="acme-bad").exists()


def test_an_archive_of_another_format_version_is_refused(acme, tmp_path):
    path, other = tmp_path / "acme.zip", tmp_path / "v99.zip"
    call_command("tenant_export", "acme", str(path), stdout=io.StringIO())

    def version_99(data: bytes) -> bytes:
        return json.dumps({**json.loads(data), "version": 99}).encode()

    _rewritten(path, other, name="manifest.json", change=version_99)

    with pytest.raises(CommandError, match="format version 99 is not supported"):
        call_command("tenant_import", str(other), subdomain="acme-v99", stdout=io.StringIO())


def test_the_manifest_holds_a_checksum_of_every_file(acme, tmp_path):
    path = tmp_path / "acme.zip"
    call_command("tenant_export", "acme", str(path), stdout=io.StringIO())

    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert set(manifest["files"]) == set(archive.namelist()) - {"manifest.json"}
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == digest
    assert manifest["format"] == "strata-tenant-archive" and manifest["version"] == 1
    assert "ai.0001_initial" in manifest["migrations"]


def test_an_owner_exports_the_workspace_from_the_billing_page(acme, jobs, tmp_path):
    owner = acme.session_client(acme.owner)

    with jobs():
        response = owner.post("/billing/export/")

    assert response.status_code == 302
    link = link_in(sent_to(acme.owner.email)[0], r"/downloads/[^\s\"/]+/")
    download = owner.get(link)
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    assert archive_verify(archive)["tenant"]["subdomain"] == "acme"
    assert acme.session_client(acme.member).get(link).status_code == 404


def test_a_member_cannot_export_the_workspace(acme, jobs):
    with jobs():
        response = acme.session_client(acme.member).post("/billing/export/", follow=True)

    assert "Only owners can export the workspace." in response.content.decode()
    assert not sent_to(acme.member.email)
