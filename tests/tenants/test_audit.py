"""The audit log: wired to sign-ins, invitations, roles, keys and more; append-only in the
database; chained by hash per tenant (audit_verify finds a tampered row); filtered, paged and
exported for owners and admins only; pruned by retention without breaking the chain."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
import uuid

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from tenants.audit.models import Action, AuditEntry, AuditPrune
from tenants.audit.services import audit_prune, audit_record, audit_verify
from tenants.models import Invitation, Membership, Tenant
from tenants.services.api_keys import api_key_create
from tenants.services.invitations import invitation_accept, invitation_create, token_hash
from tests.conftest import host_client
from tests.factories import PASSWORD


def body(response) -> bytes:
    """A streamed export, read as a client would (its chunks come from an async generator)."""

    async def read() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(read)()


def entries(world, action=None):
    rows = AuditEntry.objects.filter(tenant_id=world.tenant.pk).order_by("id")
    return list(rows.filter(action=action) if action else rows)


def last(world, action):
    found = entries(world, action)
    assert found, f"no {action} entry"
    return found[-1]


# --- wired events -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/api/auth/login/", "email"), ("/login/", "username"), ("/admin/login/", "username")],
)
def test_sign_ins_and_failures_are_recorded_with_the_client_address(acme, path, fields):
    client = host_client(acme.host)
    form = {"format": "json"} if path.startswith("/api/") else {}
    client.post(path, {fields: acme.owner.email, "password": "wrong"}, REMOTE_ADDR="10.1.2.3", **form)
    failed = last(acme, Action.LOGIN_FAILED)
    assert (failed.actor_type, failed.actor_label, failed.ip) == ("anonymous", acme.owner.email, "10.1.2.3")

    client.post(path, {fields: acme.owner.email, "password": PASSWORD}, REMOTE_ADDR="10.1.2.4", **form)
    signed_in = last(acme, Action.LOGIN)
    assert (signed_in.actor_type, signed_in.actor_id, signed_in.ip) == ("user", acme.owner.pk, "10.1.2.4")


@pytest.mark.parametrize(("proxies", "expected"), [(0, "10.0.0.9"), (1, "203.0.113.7")])
def test_x_forwarded_for_is_believed_only_behind_the_configured_proxies(acme, settings, proxies, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    host_client(acme.host).post(
        "/api/auth/login/",
        {"email": acme.owner.email, "password": "wrong"},
        format="json",
        REMOTE_ADDR="10.0.0.9",
        HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.7",
    )
    assert last(acme, Action.LOGIN_FAILED).ip == expected


def test_invitations_created_accepted_and_revoked_are_recorded(acme):
    client = acme.client(acme.owner_token)
    created = client.post(
        "/api/invitations/", {"email": "new@acme.test", "role": "admin"}, format="json", REMOTE_ADDR="10.2.0.1"
    )
    assert created.status_code == 201
    entry = last(acme, Action.INVITATION_CREATED)
    assert (entry.actor_id, entry.target, entry.changes, entry.ip) == (
        acme.owner.pk,
        "new@acme.test",
        {"role": "admin"},
        "10.2.0.1",
    )

    assert client.delete(f"/api/invitations/{created.json()['id']}/").status_code == 204
    assert last(acme, Action.INVITATION_REVOKED).target == "new@acme.test"

    invitation = invitation_create(tenant=acme.tenant, actor=acme.owner, email="joiner@acme.test", role="member")
    Invitation.objects.filter(pk=invitation.pk).update(token_hash=token_hash("tok-1"))
    accepted = invitation_accept(tenant=acme.tenant, token="tok-1", name="Jo", password="a-long-pass-phrase-1")
    entry = last(acme, Action.INVITATION_ACCEPTED)
    assert (entry.actor_type, entry.actor_id, entry.target) == ("user", accepted.user.pk, "joiner@acme.test")


def test_role_changes_and_removals_are_recorded_with_before_and_after(acme, new_member):
    user, _ = new_member(acme)
    membership = Membership.objects.get(user=user, tenant=acme.tenant)
    client = acme.client(acme.owner_token)
    assert client.patch(f"/api/members/{membership.pk}/", {"role": "admin"}, format="json").status_code == 200
    entry = last(acme, Action.MEMBER_ROLE_CHANGED)
    assert (entry.actor_id, entry.target, entry.changes) == (acme.owner.pk, user.email, {"role": ["member", "admin"]})

    assert client.delete(f"/api/members/{membership.pk}/").status_code == 204
    entry = last(acme, Action.MEMBER_REMOVED)
    assert (entry.actor_id, entry.target) == (acme.owner.pk, user.email)


def test_a_member_leaving_is_recorded(acme, new_member):
    from tenants.services.members import membership_leave

    user, _ = new_member(acme, "admin")
    membership_leave(tenant=acme.tenant, user=user)
    entry = last(acme, Action.MEMBER_LEFT)
    assert (entry.actor_id, entry.target, entry.changes) == (user.pk, user.email, {"role": "admin"})


def test_api_keys_created_and_revoked_are_recorded_and_a_key_is_an_actor(acme):
    client = acme.client(acme.owner_token)
    created = client.post("/api/keys/", {"name": "ci", "scope": "write"}, format="json", REMOTE_ADDR="10.3.0.1")
    entry = last(acme, Action.API_KEY_CREATED)
    assert (entry.actor_id, entry.target, entry.ip) == (acme.owner.pk, f"ci ({created.json()['prefix']})", "10.3.0.1")

    assert client.delete(f"/api/keys/{created.json()['id']}/").status_code == 204
    assert last(acme, Action.API_KEY_REVOKED).actor_id == acme.owner.pk

    api_key, _ = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="bot", scope="write")
    entry = audit_record(tenant=acme.tenant, action=Action.DOCUMENT_DELETED, actor=api_key.user, target="doc")
    assert (entry.actor_type, entry.actor_id, entry.actor_label) == ("key", api_key.pk, f"bot ({api_key.prefix})")


def test_an_owners_plan_change_is_recorded(acme, settings):
    settings.DEBUG = True  # without Stripe, paid plans change at once only in a local demo
    response = acme.session_client(acme.owner).post("/billing/plan/", {"plan": "pro"}, REMOTE_ADDR="10.4.0.1")
    assert response.status_code == 302
    entry = last(acme, Action.PLAN_CHANGED)
    assert (entry.actor_id, entry.changes, entry.ip) == (acme.owner.pk, {"plan": ["free", "pro"]}, "10.4.0.1")


def test_a_plan_change_from_stripes_webhook_is_recorded_as_stripe(acme):
    from billing.models import Plan
    from billing.services.subscriptions import subscription_changed

    Plan.objects.filter(slug="pro").update(stripe_price_id="price_audit_pro")
    subscription_changed(
        obj={
            "id": "sub_audit",
            "customer": "cus_audit",
            "status": "active",
            "metadata": {"subdomain": acme.tenant.subdomain},
            "items": {"data": [{"price": {"id": "price_audit_pro"}}]},
        },
        event_at=timezone.now(),
    )
    entry = last(acme, Action.PLAN_CHANGED)
    assert (entry.actor_type, entry.actor_label, entry.changes) == ("system", "Stripe", {"plan": ["free", "pro"]})


def test_a_document_deleted_with_an_api_key_is_recorded_against_the_key(acme):
    api_key, key = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="sync", scope="write")
    client = host_client(acme.host)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    document = client.post("/api/documents/", {"title": "Old", "content": "Gone soon."}, format="json").json()
    assert client.delete(f"/api/documents/{document['id']}/", REMOTE_ADDR="10.5.0.1").status_code == 204
    entry = last(acme, Action.DOCUMENT_DELETED)
    assert (entry.actor_type, entry.actor_id, entry.ip) == ("key", api_key.pk, "10.5.0.1")


@pytest.fixture
def operator_client(django_user_model):
    operator = django_user_model.objects.create_superuser("ops@example.com", PASSWORD)
    client = host_client("localhost")
    client.force_login(operator)
    return client, operator


def test_operators_actions_on_a_tenant_are_recorded_as_the_operator(acme, new_member, operator_client):
    client, operator = operator_client
    user, _ = new_member(acme)
    membership = Membership.objects.get(user=user, tenant=acme.tenant)
    changed = client.post(
        f"/admin/tenants/membership/{membership.pk}/change/",
        {"user": user.pk, "tenant": acme.tenant.pk, "role": "admin"},
        REMOTE_ADDR="10.6.0.1",
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    entry = last(acme, Action.MEMBER_ROLE_CHANGED)
    assert (entry.actor_type, entry.actor_id, entry.actor_label) == ("operator", operator.pk, "ops@example.com")
    assert (entry.target, entry.changes, entry.ip) == (user.email, {"role": ["member", "admin"]}, "10.6.0.1")

    client.post(
        "/admin/tenants/tenant/", {"action": "suspend", "_selected_action": [acme.tenant.pk]}, REMOTE_ADDR="10.6.0.2"
    )
    entry = last(acme, Action.TENANT_SUSPENDED)
    assert (entry.actor_type, entry.actor_id, entry.ip) == ("operator", operator.pk, "10.6.0.2")


def test_operators_see_every_tenants_entries_read_only(acme, globex, operator_client):
    client, _ = operator_client
    mine = audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner, target="acme-entry")
    audit_record(tenant=globex.tenant, action=Action.LOGIN, actor=globex.owner, target="globex-entry")
    listing = client.get("/admin/audit/auditentry/").content.decode()
    assert "acme-entry" in listing and "globex-entry" in listing
    assert "delete_selected" not in listing
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.get(f"/admin/audit/auditentry/{mine.pk}/delete/").status_code == 403
    client.post(f"/admin/audit/auditentry/{mine.pk}/change/", {"target": "edited"})
    assert AuditEntry.objects.get(pk=mine.pk).target == "acme-entry"


def test_agent_actions_cannot_be_deleted_from_the_tenant_admin(acme):
    from django_tenants.utils import tenant_context

    from ai.models import AgentAction

    with tenant_context(acme.tenant):
        action = AgentAction.objects.create(agent_type="chat", user=acme.owner, input_prompt="q", output_text="a")
    client = acme.session_client(acme.owner)
    listing = client.get("/admin/ai/agentaction/").content.decode()
    assert "delete_selected" not in listing
    assert client.post(f"/admin/ai/agentaction/{action.pk}/delete/", {"post": "yes"}).status_code == 403
    with tenant_context(acme.tenant):
        assert AgentAction.objects.filter(pk=action.pk).exists()


# --- append-only, chain, verify ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("not-an-address", None),
    ],
)
def test_addresses_and_changes_are_hashed_as_postgresql_reads_them_back(acme, given, stored):
    changes = {"big": 1e20, "tiny": 1.5e-7, "when": timezone.now(), "nested": {"b": 1, "a": [1.0]}}
    entry = audit_record(tenant=acme.tenant, action=Action.LOGIN, ip=given, target="a\x00b", changes=changes)
    assert AuditEntry.objects.get(pk=entry.pk).ip == stored == entry.ip
    assert entry.target == "ab"
    assert audit_verify(tenant_id=acme.tenant.pk).ok


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET action = 'auth.logout' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ],
)
def test_the_database_refuses_update_and_delete(acme, statement):
    entry = audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [entry.pk])
    assert AuditEntry.objects.get(pk=entry.pk).action == Action.LOGIN


def test_a_retention_setting_does_not_open_young_rows_to_delete(acme):
    entry = audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    old = (timezone.now() - dt.timedelta(days=1)).isoformat()
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('strata.audit_prune_before', %s, true)", [old])
        cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [entry.pk])


def test_orm_deletes_are_refused_too(acme):
    audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(tenant_id=acme.tenant.pk).delete()


def tamper(sql, params):
    """What a superuser session can do: switch the trigger off and edit the row."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_auditentry_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_auditentry_append_only")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("UPDATE audit_auditentry SET target = 'someone else' WHERE id = %s", "content"),
        ("UPDATE audit_auditentry SET ip = '127.0.0.1' WHERE id = %s", "content"),
        ("DELETE FROM audit_auditentry WHERE id = %s", "link"),
    ],
)
def test_audit_verify_reports_the_first_tampered_row(acme, sql, reason):
    made = [audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner, target=f"t{n}") for n in range(4)]
    call_command("audit_verify", "--tenant", acme.tenant.subdomain, stdout=io.StringIO())
    tamper(sql, [made[1].pk])

    result = audit_verify(tenant_id=acme.tenant.pk)
    assert result.bad_id == (made[1].pk if reason == "content" else made[2].pk)
    assert reason in result.reason
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("audit_verify", "--tenant", str(acme.tenant.pk), stdout=io.StringIO(), stderr=err)
    assert f"entry {result.bad_id} is bad" in err.getvalue()


def test_a_row_written_around_the_service_breaks_the_chain(acme):
    audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    forged = AuditEntry.objects.create(
        tenant_id=acme.tenant.pk,
        tenant_subdomain=acme.tenant.subdomain,
        at=timezone.now(),
        actor_type="user",
        actor_id=acme.owner.pk,
        action=Action.LOGIN,
        prev_hash="0" * 64,
        hash="0" * 64,
    )
    assert audit_verify(tenant_id=acme.tenant.pk).bad_id == forged.pk


def test_concurrent_writers_keep_one_chain(db, unique_subdomain):
    # A tenant of its own (the log has no foreign key to it): the writers' threads commit for real.
    tenant = Tenant(pk=2_000_000_000 + int(unique_subdomain[1:7], 16), subdomain=unique_subdomain)
    start = threading.Barrier(6)
    errors = []

    def write(n):
        try:
            start.wait(timeout=10)
            for i in range(5):
                audit_record(tenant=tenant, action=Action.LOGIN, target=f"w{n}-{i}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    rows = list(AuditEntry.objects.filter(tenant_id=tenant.pk).order_by("id").values_list("prev_hash", "hash"))
    assert len(rows) == 30
    assert len({prev for prev, _ in rows}) == len(rows)  # no two entries chained onto the same one
    assert audit_verify(tenant_id=tenant.pk).ok


# --- retention ----------------------------------------------------------------------------------


def test_retention_prunes_only_old_rows_and_the_chain_still_verifies(acme, globex, settings):
    settings.AUDIT_RETENTION_DAYS = 400
    old = [audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner) for _ in range(3)]
    old_elsewhere = audit_record(tenant=globex.tenant, action=Action.LOGIN, actor=globex.owner)
    young = audit_record(tenant=acme.tenant, action=Action.LOGOUT, actor=acme.owner)
    young_elsewhere = audit_record(tenant=globex.tenant, action=Action.LOGOUT, actor=globex.owner)

    # 400 days after ``young``: everything older than it has passed the retention period.
    deleted = audit_prune(now=young.at + dt.timedelta(days=400))

    assert deleted >= 4
    assert not AuditEntry.objects.filter(pk__in=[entry.pk for entry in [*old, old_elsewhere]]).exists()
    assert AuditEntry.objects.filter(pk__in=[young.pk, young_elsewhere.pk]).count() == 2
    assert audit_verify(tenant_id=acme.tenant.pk).ok and audit_verify(tenant_id=globex.tenant.pk).ok
    mark = AuditPrune.objects.filter(tenant_id=acme.tenant.pk).latest("id")
    assert (mark.through_id, mark.through_hash) == (old[-1].pk, old[-1].hash)
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditprune SET through_hash = '' WHERE id = %s", [mark.pk])
    # New entries chain on; the first survivor removed any other way than retention is caught.
    audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner)
    assert audit_verify(tenant_id=acme.tenant.pk).ok
    tamper("DELETE FROM audit_auditentry WHERE id = %s", [young.pk])
    assert audit_verify(tenant_id=acme.tenant.pk).bad_id is not None


def test_retention_job_is_a_periodic_job():
    from core.platform.jobs import app

    periodic = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    assert "audit.prune" in periodic


# --- API, page, exports --------------------------------------------------------------------------


@pytest.fixture
def logged(acme, globex):
    made = [
        audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.owner, ip="10.0.0.1"),
        audit_record(tenant=acme.tenant, action=Action.LOGIN_FAILED, actor_label="=cmd|x", target="=cmd|x"),
        audit_record(
            tenant=acme.tenant,
            action=Action.MEMBER_ROLE_CHANGED,
            actor=acme.owner,
            changes={"role": ["member", "admin"]},
        ),
        audit_record(tenant=acme.tenant, action=Action.LOGIN, actor=acme.member),
    ]
    audit_record(tenant=globex.tenant, action=Action.LOGIN, actor=globex.owner, target="globex-secret")
    return made


def test_the_api_pages_newest_first_with_a_cursor(acme, logged):
    client = acme.client(acme.owner_token)
    ids, url = [], "/api/audit/?limit=2"
    while url:
        body = client.get(url).json()
        assert set(body) == {"results", "next"}
        ids += [row["id"] for row in body["results"]]
        url = body["next"]
    mine = [entry.pk for entry in reversed(logged)]
    assert [i for i in ids if i in mine] == mine
    first = client.get("/api/audit/?limit=500").json()["results"]
    row = next(row for row in first if row["id"] == logged[2].pk)
    assert row == {
        "id": logged[2].pk,
        "at": logged[2].at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "actor": {"type": "user", "id": acme.owner.pk, "label": acme.owner.email},
        "action": "member.role_changed",
        "target": "",
        "ip": None,
        "changes": {"role": ["member", "admin"]},
    }


def test_the_api_filters_by_actor_action_and_dates(acme, logged):
    client = acme.client(acme.owner_token)

    def ids(query):
        response = client.get(f"/api/audit/?limit=500&{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]} & {entry.pk for entry in logged}

    assert ids(f"actor=user:{acme.member.pk}") == {logged[3].pk}
    assert ids(f"actor={acme.owner.email.upper()}") == {logged[0].pk, logged[2].pk}
    assert ids("actor=system") == {logged[1].pk}
    assert ids("action=auth.login") == {logged[0].pk, logged[3].pk}
    assert ids("action=auth.*") == {logged[0].pk, logged[1].pk, logged[3].pk}
    assert ids("action=auth.login_failed,member.role_changed") == {logged[1].pk, logged[2].pk}
    after_first = (logged[1].at).isoformat()
    assert ids(f"since={after_first.replace('+', '%2B')}") == {entry.pk for entry in logged[1:]}
    assert ids(f"until={after_first.replace('+', '%2B')}") == {logged[0].pk}
    today = timezone.now().date()
    assert ids(f"since={today}&until={today}") == {entry.pk for entry in logged}
    assert ids(f"until={today - dt.timedelta(days=1)}") == set()
    assert ids("until=9999-12-31") == {entry.pk for entry in logged}
    for refused in ("since=yesterday", "cursor=abc", "cursor=0", "limit=0", "limit=501", "format=xml", "actor=a%00b"):
        assert client.get(f"/api/audit/?{refused}").status_code == 400, refused


def test_another_tenants_entries_never_appear(acme, logged):
    client = acme.client(acme.owner_token)
    listed = client.get("/api/audit/?limit=500").json()["results"]
    assert all(row["target"] != "globex-secret" for row in listed)
    exported = body(client.get("/api/audit/?format=jsonl"))
    assert b"globex-secret" not in exported
    assert "globex-secret" not in client.get(f"/api/audit/?actor=user:{logged[0].actor_id}&limit=500").content.decode()


def test_members_and_api_keys_get_403(acme, logged):
    assert acme.client(acme.member_token).get("/api/audit/").status_code == 403
    assert acme.client(acme.member_token).get("/api/audit/?format=csv").status_code == 403
    _, key = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="reader", scope="read")
    keyed = host_client(acme.host)
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert keyed.get("/api/audit/").status_code == 403
    page = acme.session_client(acme.member).get("/audit/")
    assert page.status_code == 403


def test_jsonl_export_streams_every_entry_oldest_first_with_its_hashes(acme, logged):
    response = acme.client(acme.owner_token).get("/api/audit/?format=jsonl&action=auth.*")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body(response).decode().splitlines()]
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    mine = [line for line in lines if line["id"] in {entry.pk for entry in logged}]
    assert [line["id"] for line in mine] == [logged[0].pk, logged[1].pk, logged[3].pk]
    assert mine[0]["hash"] == logged[0].hash and mine[1]["prev_hash"] == logged[0].hash
    assert last(acme, Action.AUDIT_EXPORTED).changes == {"format": "jsonl", "filters": {"action": "auth.*"}}


def test_csv_export_streams_and_defuses_formulas(acme, logged):
    response = acme.client(acme.owner_token).get(f"/api/audit/?format=csv&since={timezone.now().date()}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    failed = next(row for row in rows if row["id"] == str(logged[1].pk))
    assert failed["actor_label"] == "'=cmd|x" and failed["target"] == "'=cmd|x"
    changed = next(row for row in rows if row["id"] == str(logged[2].pk))
    assert json.loads(changed["changes"]) == {"role": ["member", "admin"]}


def test_the_page_lists_and_filters_entries_for_admins(acme, logged):
    client = acme.session_client(acme.owner)
    page = client.get("/audit/")
    assert page.status_code == 200
    assert "Role changed" in page.content.decode() and "globex-secret" not in page.content.decode()
    assert "{&quot;role&quot;: [&quot;member&quot;, &quot;admin&quot;]}" in page.content.decode()
    assert "cursor is not one this page gave" in client.get("/audit/?cursor=%C2%B2").content.decode()
    assert "since must be an ISO date" in client.get("/audit/?since=soon").content.decode()
    filtered = client.get("/audit/?action=member.role_changed").content.decode()
    assert 'data-action="member.role_changed"' in filtered and 'data-action="auth.login"' not in filtered


@pytest.mark.django_db
def test_an_export_streams_through_the_asgi_server(live_worlds, asgi_server):
    # Served as in production: an async stream that fetches its chunks on connections it gives back.
    acme = live_worlds["acme"]
    with httpx.Client(base_url=asgi_server.url, headers={"Host": acme.host}, timeout=30) as http:
        tried = f"nobody-{uuid.uuid4().hex[:8]}@acme.test"
        http.post("/api/auth/login/", json={"email": tried, "password": "wrong"})
        auth = {"Authorization": f"Token {acme.owner_token}"}
        with http.stream("GET", "/api/audit/?format=jsonl&action=auth.login_failed", headers=auth) as response:
            assert response.status_code == 200
            lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["actor"]["label"] for line in lines if line["target"] == tried] == [tried]


@pytest.mark.django_db
def test_services_behind_the_asgi_server_record_the_client_address(asgi_server, live_worlds, committed_tenants):
    # The address reaches services through AuditContextMiddleware's context variable, across the
    # ASGI handler's thread hops. A tenant of its own: what the server does here is committed.
    subdomain = f"au{uuid.uuid4().hex[:8]}"
    committed_tenants.append(subdomain)
    signup = httpx.post(
        f"{asgi_server.url}/api/signup/",
        headers={"Host": "localhost"},
        json={
            "organisation": "Audit",
            "subdomain": subdomain,
            "email": f"owner@{subdomain}.test",
            "password": PASSWORD,
            "plan": "free",
        },
        timeout=60,
    )
    assert signup.status_code == 201, signup.text
    invited = httpx.post(
        f"{asgi_server.url}/api/invitations/",
        headers={"Host": f"{subdomain}.localhost", "Authorization": f"Token {signup.json()['token']}"},
        json={"email": f"new@{subdomain}.test", "role": "member"},
        timeout=30,
    )
    assert invited.status_code == 201, invited.text
    entry = AuditEntry.objects.filter(tenant_subdomain=subdomain, action=Action.INVITATION_CREATED).get()
    assert (entry.actor_label, entry.ip) == (f"owner@{subdomain}.test", "127.0.0.1")
