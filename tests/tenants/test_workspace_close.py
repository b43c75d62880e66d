"""Closing a workspace (owner, operator, unpaid signup): access stops at once, pending usage goes to
Stripe before the subscription is cancelled, jobs stop, an operator can restore it during the grace
period, and afterwards the schema is dropped and the subdomain freed while the ledger and the audit
log stay."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async
from django.db.models import Sum
from django.utils import timezone
from django_tenants.utils import schema_exists, tenant_context
from procrastinate.contrib.django.models import ProcrastinateJob

from ai.models import Chunk
from ai.services.documents import INGEST_JOB
from billing.models import Subscription, UsageEvent
from config.lifecycle import (
    signups_unpaid_release,
    workspace_close,
    workspace_restore,
    workspaces_billing_unsettled_close,
    workspaces_delete_due,
)
from config.signup import tenant_signup
from core.platform.exceptions import ApplicationError
from tenants.audit.models import Action, ActorType, AuditEntry
from tenants.audit.services import Operator
from tenants.models import ApiKey, Domain, Invitation, Membership, Tenant
from tenants.services.api_keys import api_key_create
from tenants.services.invitations import invitation_create
from tenants.services.status import tenant_delete
from tests.ai.factories import world_create
from tests.billing import conftest as billing
from tests.billing.conftest import PaidTenant, record_usage
from tests.conftest import World, host_client
from tests.factories import PASSWORD
from tests.fakes.stripe import FakeStripe
from tests.processes import committed, live_database_url, manage_py_process, process_stop, wait_until

# The billing suite's fixtures: the real stripe SDK against the fake, a tenant that paid by Checkout.
stripe_server = billing.stripe_server
stripe_fake = billing.stripe_fake
paid_plans = billing.paid_plans
send_webhook = billing.send_webhook
pending_tenant = billing.pending_tenant
paid_tenant = billing.paid_tenant
_billing_tables_empty = billing._billing_tables_empty


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):  # noqa: ANN001
    """``with run_on_commit(): ...``: what the block leaves for after commit (revocations, jobs) runs."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def operator_client(django_user_model, db):  # noqa: ANN001
    operator = django_user_model.objects.create_superuser("ops@example.com", "ops-Passw0rd!")
    client = host_client("localhost")
    client.force_login(operator)
    client.operator = operator  # type: ignore[attr-defined]
    return client


def audit_actions(tenant_id: int) -> list[tuple[str, str]]:
    entries = AuditEntry.objects.filter(tenant_id=tenant_id).order_by("id")
    return [(entry.action, entry.actor_type) for entry in entries]


def ledger_total() -> int:
    return UsageEvent.objects.aggregate(total=Sum("total_tokens"))["total"] or 0


def paid_with_pending_usage(paid: PaidTenant) -> list[UsageEvent]:
    """Two rows Stripe already has, three it has not (2,213 tokens, as in the issue)."""
    sent = [record_usage(paid.tenant, tokens=300), record_usage(paid.tenant, tokens=200)]
    UsageEvent.objects.filter(pk__in=[row.pk for row in sent]).update(meter_status=UsageEvent.MeterStatus.SENT)
    return [record_usage(paid.tenant, tokens=tokens) for tokens in (1000, 813, 400)]


# --- closing by the owner: billing ---------------------------------------------------------------


def test_closing_a_paid_workspace_sends_its_pending_usage_then_cancels_the_subscription(
    paid_tenant: PaidTenant, stripe_fake: FakeStripe, run_on_commit
):
    pending = paid_with_pending_usage(paid_tenant)
    subscription_id = paid_tenant.subscription["id"]
    owner = paid_tenant.client(paid_tenant.owner_token)

    with run_on_commit():
        response = owner.post("/api/workspace/close/", {"confirm": paid_tenant.tenant.subdomain.upper()}, format="json")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "closed"
    deadline = dt.datetime.fromisoformat(body["delete_after"])
    assert abs(deadline - (timezone.now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    # Stripe got exactly the three pending rows, by their identifiers, and then the cancellation.
    sent = {event["identifier"]: int(event["payload"]["value"]) for event in stripe_fake.meter_events}
    assert sent == {row.meter_identifier: row.total_tokens for row in pending}
    assert sum(sent.values()) == 2213
    assert stripe_fake.meter_totals() == {paid_tenant.customer_id: 2213}
    assert stripe_fake.subscriptions[subscription_id]["status"] == "canceled"
    paths = [(request.method, request.path) for request in stripe_fake.requests]
    cancel = paths.index(("DELETE", f"/v1/subscriptions/{subscription_id}"))
    assert all(index < cancel for index, path in enumerate(paths) if path[1] == "/v1/billing/meter_events")
    assert UsageEvent.objects.filter(tenant=paid_tenant.tenant, meter_status="pending").count() == 0
    row = Subscription.objects.select_related("plan").get(tenant=paid_tenant.tenant)
    assert (row.status, row.plan.slug) == ("canceled", "free")
    assert paid_tenant.refresh().status == Tenant.Status.CLOSED
    assert audit_actions(paid_tenant.tenant.pk)[-1] == (Action.WORKSPACE_CLOSED, ActorType.USER)


def test_closing_an_unpaid_workspace_expires_its_open_checkout(
    pending_tenant: PaidTenant, stripe_fake: FakeStripe, run_on_commit
):
    with run_on_commit():
        workspace_close(tenant=pending_tenant.tenant, actor=Operator(None))

    assert stripe_fake.checkout_sessions[pending_tenant.session_id]["status"] == "expired"
    with pytest.raises(ValueError, match="not open"):
        stripe_fake.complete_checkout(pending_tenant.session_id)  # the owner can no longer pay for it
    assert Subscription.objects.get(tenant=pending_tenant.tenant).checkout_session_id == ""


def test_a_stripe_outage_leaves_the_workspace_closed_and_its_billing_open_for_the_next_try(
    paid_tenant: PaidTenant, stripe_fake: FakeStripe, run_on_commit
):
    pending = paid_with_pending_usage(paid_tenant)
    stripe_fake.outage = True
    with run_on_commit():
        workspace_close(tenant=paid_tenant.tenant, actor=None)

    assert paid_tenant.refresh().status == Tenant.Status.CLOSED  # access stopped regardless
    assert UsageEvent.objects.filter(pk__in=[row.pk for row in pending], meter_status="pending").count() == 3
    assert stripe_fake.subscriptions[paid_tenant.subscription["id"]]["status"] == "active"

    stripe_fake.outage = False
    assert workspaces_billing_unsettled_close() == 1
    assert stripe_fake.meter_totals() == {paid_tenant.customer_id: 2213}
    assert stripe_fake.subscriptions[paid_tenant.subscription["id"]]["status"] == "canceled"


# --- closing by the owner: who may, and what everyone sees after ----------------------------------


def test_only_an_owner_who_types_the_subdomain_can_close_the_workspace(paid_tenant: PaidTenant):
    tenant = paid_tenant.tenant
    member = paid_tenant.client(paid_tenant.member_token).post(
        "/api/workspace/close/", {"confirm": tenant.subdomain}, format="json"
    )
    wrong = paid_tenant.client(paid_tenant.owner_token).post(
        "/api/workspace/close/", {"confirm": "something-else"}, format="json"
    )
    assert member.status_code == 403
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "confirmation_mismatch"
    assert paid_tenant.refresh().status == Tenant.Status.ACTIVE


def test_a_closed_workspace_answers_410_with_a_code_on_pages_and_api(paid_tenant: PaidTenant, run_on_commit):
    tenant = paid_tenant.tenant
    with run_on_commit():
        workspace_close(tenant=tenant, actor=None)

    api = paid_tenant.client(paid_tenant.owner_token).get("/api/documents/")
    page = paid_tenant.client().get("/")
    login = paid_tenant.client().get("/login/")
    again = paid_tenant.client(paid_tenant.owner_token).post(
        "/api/workspace/close/", {"confirm": tenant.subdomain}, format="json"
    )
    assert api.status_code == 410 and api.json()["error"]["code"] == "workspace_closed"
    assert again.status_code == 410
    for response in (page, login):
        assert response.status_code == 410
        text = response.content.decode()
        assert 'data-code="workspace_closed"' in text and "restore it" in text
    assert tenant not in Tenant.objects.filter(status=Tenant.Status.ACTIVE)


def test_the_api_schema_documents_the_closed_answer_and_the_close_endpoint(acme: World):
    schema = acme.client(acme.owner_token).get("/api/schema/", HTTP_ACCEPT="application/json").json()
    close = schema["paths"]["/api/workspace/close/"]["post"]
    assert {"202", "400", "403", "410"} <= close["responses"].keys()
    assert "410" in schema["paths"]["/api/documents/"]["get"]["responses"]


def test_the_billing_page_closes_the_workspace_once_the_subdomain_is_typed(paid_tenant: PaidTenant, run_on_commit):
    tenant = paid_tenant.tenant
    owner = Membership.objects.get(tenant=tenant, role=Membership.Role.OWNER).user
    with tenant_context(tenant):
        client = host_client(paid_tenant.host)
        client.force_login(owner)

    page = client.get("/billing/")
    assert page.status_code == 200 and 'action="/workspace/close/"' in page.content.decode()
    refused = client.post("/workspace/close/", {"confirm": "nope"})
    assert refused.status_code == 302 and paid_tenant.refresh().status == Tenant.Status.ACTIVE
    with run_on_commit():
        closed = client.post("/workspace/close/", {"confirm": tenant.subdomain})
    assert closed.status_code == 302
    assert paid_tenant.refresh().status == Tenant.Status.CLOSED
    assert client.get("/").status_code == 410


# --- restoring, and deleting after the grace period ---------------------------------------------------


def test_an_operator_restores_a_closed_workspace_within_the_grace_period(paid_tenant: PaidTenant, run_on_commit):
    tenant = paid_tenant.tenant
    with run_on_commit():
        workspace_close(tenant=tenant, actor=Membership.objects.get(tenant=tenant, role="owner").user)
    assert paid_tenant.client(paid_tenant.member_token).get("/api/documents/").status_code == 410

    workspace_restore(tenant=tenant, actor=Operator(None), now=timezone.now() + dt.timedelta(days=29))

    assert paid_tenant.refresh().status == Tenant.Status.ACTIVE
    assert (tenant.closed_at, tenant.delete_after) == (None, None)
    assert paid_tenant.client(paid_tenant.member_token).get("/api/documents/").status_code == 200
    assert paid_tenant.row.plan.slug == "free"  # its subscription was cancelled: it restarts unpaid
    assert [action for action, _ in audit_actions(tenant.pk)][-2:] == [
        Action.WORKSPACE_CLOSED,
        Action.WORKSPACE_RESTORED,
    ]


def test_the_platforms_own_tenant_is_never_closed_nor_its_schema_dropped(db):  # noqa: ANN001
    public = Tenant.objects.get(schema_name="public")
    with pytest.raises(ApplicationError) as refused:
        workspace_close(tenant=public, actor=Operator(), grace=dt.timedelta(0))
    assert refused.value.code == "platform_tenant"
    public.status = Tenant.Status.CLOSED  # as if a bug had closed it: deleting still refuses
    with pytest.raises(ApplicationError) as refused:
        tenant_delete(tenant=public)
    assert refused.value.code == "platform_tenant" and schema_exists("public")


def test_after_the_grace_period_a_workspace_cannot_be_restored(paid_tenant: PaidTenant, run_on_commit):
    with run_on_commit():
        workspace_close(tenant=paid_tenant.tenant, actor=None)
    with pytest.raises(ApplicationError) as refused:
        workspace_restore(tenant=paid_tenant.tenant, actor=None, now=timezone.now() + dt.timedelta(days=31))
    assert refused.value.code == "grace_over"


def test_after_the_deadline_the_schema_goes_the_subdomain_is_free_and_the_ledger_still_sums_the_same(
    paid_tenant: PaidTenant, stripe_fake: FakeStripe, run_on_commit
):
    tenant = paid_tenant.tenant
    paid_with_pending_usage(paid_tenant)
    owner = Membership.objects.get(tenant=tenant, role=Membership.Role.OWNER).user
    key, _ = api_key_create(tenant=tenant, created_by=owner, name="bot", scope="write")
    UsageEvent.objects.filter(tenant=tenant, meter_status="sent").update(api_key=key)
    with run_on_commit():
        invitation_create(tenant=tenant, actor=owner, email="later@example.com", role="member")
    total = ledger_total()
    closed_at = timezone.now() - dt.timedelta(days=31)
    with run_on_commit():
        workspace_close(tenant=tenant, actor=None, now=closed_at)

    assert workspaces_delete_due(now=closed_at + dt.timedelta(days=29)) == []  # not yet
    assert schema_exists(tenant.schema_name)
    with run_on_commit():
        assert workspaces_delete_due() == [tenant.subdomain]

    assert not schema_exists(tenant.schema_name)
    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not Domain.objects.filter(domain=f"{tenant.subdomain}.localhost").exists()
    for rows in (Membership.objects, Invitation.objects, ApiKey.objects, Subscription.objects):
        assert not rows.filter(tenant_id=tenant.pk).exists()
    assert ledger_total() == total
    assert UsageEvent.objects.filter(tenant_id=tenant.pk).aggregate(t=Sum("total_tokens"))["t"] == 2713
    assert [action for action, _ in audit_actions(tenant.pk)][-2:] == [
        Action.WORKSPACE_CLOSED,
        Action.WORKSPACE_DELETED,
    ]
    again = tenant_signup(
        organisation="Again", subdomain=tenant.subdomain, email="new@again.test", password=PASSWORD, plan="free"
    )
    assert again.tenant.pk != tenant.pk and schema_exists(again.tenant.schema_name)


# --- the operators' admin -------------------------------------------------------------------------------


def test_the_operator_admin_delete_closes_the_tenant_and_restore_brings_it_back(
    paid_tenant: PaidTenant, operator_client, run_on_commit
):
    tenant = paid_tenant.tenant
    record_usage(tenant, tokens=50)
    url = f"/admin/tenants/tenant/{tenant.pk}/delete/"

    confirm = operator_client.get(url)
    assert confirm.status_code == 200, confirm.content
    assert "restorable for 30 days" in confirm.content.decode()
    with run_on_commit():
        deleted = operator_client.post(url, {"post": "yes"})
    assert deleted.status_code == 302
    assert paid_tenant.refresh().status == Tenant.Status.CLOSED
    assert audit_actions(tenant.pk)[-1] == (Action.WORKSPACE_CLOSED, ActorType.OPERATOR)

    restored = operator_client.post(
        "/admin/tenants/tenant/", {"action": "restore", "_selected_action": [tenant.pk]}, follow=True
    )
    assert restored.status_code == 200
    assert paid_tenant.refresh().status == Tenant.Status.ACTIVE
    assert audit_actions(tenant.pk)[-1] == (Action.WORKSPACE_RESTORED, ActorType.OPERATOR)


def test_the_admin_form_cannot_set_or_leave_the_closed_status_by_editing(
    paid_tenant: PaidTenant, operator_client, run_on_commit
):
    url = f"/admin/tenants/tenant/{paid_tenant.tenant.pk}/change/"
    form = operator_client.get(url).context["adminform"].form
    assert "closed" not in dict(form.fields["status"].choices)

    with run_on_commit():
        workspace_close(tenant=paid_tenant.tenant, actor=None)
    form = operator_client.get(url).context["adminform"].form
    assert "status" not in form.fields  # shown read-only: restore is the way back


def test_unpaid_signups_are_released_through_the_same_path(pending_tenant: PaidTenant, run_on_commit):
    tenant = pending_tenant.tenant
    week_later = timezone.now() + dt.timedelta(days=8)
    Subscription.objects.filter(tenant=tenant).update(updated=timezone.now() - dt.timedelta(days=2))

    with run_on_commit():
        assert signups_unpaid_release(now=week_later) == [tenant.subdomain]

    assert not Tenant.objects.filter(pk=tenant.pk).exists() and not schema_exists(tenant.schema_name)
    closed, deleted = AuditEntry.objects.filter(tenant_id=tenant.pk).order_by("id")
    assert (closed.action, closed.changes["reason"]) == (Action.WORKSPACE_CLOSED, "unpaid signup released")
    assert deleted.action == Action.WORKSPACE_DELETED


# --- real processes: a socket on the live server, an ingestion job in a worker -----------------------------


@pytest.mark.asyncio
@pytest.mark.django_db
async def test_closing_closes_an_open_websocket_within_two_seconds(live_worlds, asgi_server):
    world: World = await database_sync_to_async(world_create)("Closing")
    url = f"ws://{world.tenant.subdomain}.localhost:{asgi_server.port}/ws/chat/"
    connect = {"host": "127.0.0.1", "port": asgi_server.port, "proxy": None}
    headers = {"Authorization": f"Token {world.member_token}"}
    async with websockets.connect(url, additional_headers=headers, **connect) as ws:
        await ws.send("not a frame")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["error"]["code"] == "bad_request"  # open, answering

        def close() -> None:
            workspace_close(tenant=Tenant.objects.get(pk=world.tenant.pk), actor=world.owner)

        await asgi_server.run_as_a_view(close)
        closed_from = asyncio.get_running_loop().time()
        with pytest.raises(websockets.ConnectionClosed) as ended:
            async with asyncio.timeout(2):
                while True:
                    await ws.recv()
        assert asyncio.get_running_loop().time() - closed_from < 2
    assert ended.value.rcvd is not None and ended.value.rcvd.code == 4403
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(url, additional_headers=headers, **connect):
            pass


def _long_text(sections: int) -> str:
    return "\n\n".join(
        f"Section {n}. The maintenance window for system {n} opens on day {n % 28 + 1} at {n % 24}:00 and "
        f"lasts {n % 5 + 1} hours; the on-call engineer for it is number {n * 7 % 101}." * 4
        for n in range(sections)
    )


def _document_add(world: World, title: str, content: str) -> int:
    response = world.client(world.owner_token).post(
        "/api/documents/", {"title": title, "content": content}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _jobs_of(world: World, **status: str) -> dict[int, str]:
    """Each document's ingestion job's status (of its newest job)."""
    jobs = ProcrastinateJob.objects.filter(task_name=INGEST_JOB, args__schema_name=world.tenant.schema_name, **status)
    return dict(jobs.order_by("id").values_list("args__document_id", "status"))


@pytest.mark.slow
@pytest.mark.django_db
def test_closing_stops_the_running_ingestion_job_and_cancels_the_waiting_ones(settings, tmp_path: Path):
    settings.TASK_MODE = "queue"
    world = committed(world_create, "Ingesting")
    worker = manage_py_process(
        "worker",
        "--concurrency",
        "2",
        "--name",
        "closing",
        env={
            "DATABASE_URL": live_database_url(),
            "TASK_MODE": "queue",
            "LOG_LEVEL": "INFO",
            "EMBEDDING_TORCH_THREADS": "1",
            "EMBEDDING_BATCH_SIZE": "4",
            "DB_APPLICATION_NAME": "strata-test-worker",
            "TENANT_SPARE_SCHEMAS": "0",
        },
        log=tmp_path / "worker.log",
    )
    try:
        running = committed(_document_add, world, "Runbook", _long_text(600))
        waiting = committed(_document_add, world, "Second", _long_text(5))

        def embedding_started() -> bool:
            with tenant_context(world.tenant):
                return Chunk.objects.filter(document_id=running, embedding__isnull=False).exists()

        wait_until(lambda: committed(embedding_started), timeout=120, every=0.1, what="the ingestion job running")
        assert committed(_jobs_of, world) == {running: "doing", waiting: "todo"}

        committed(lambda: workspace_close(tenant=Tenant.objects.get(pk=world.tenant.pk), actor=world.owner))

        def all_stopped() -> dict[int, str] | None:
            jobs = committed(_jobs_of, world)
            return jobs if not set(jobs.values()) & {"todo", "doing"} else None

        statuses = wait_until(all_stopped, timeout=15, every=0.1, what="no job of the closed tenant left todo or doing")
    finally:
        process_stop(worker)
    assert statuses == {running: "aborted", waiting: "cancelled"}
    assert "ended with status: Aborted" in (tmp_path / "worker.log").read_text()

    # Restored, both documents are queued again (their jobs were stopped, not finished).
    committed(lambda: workspace_restore(tenant=Tenant.objects.get(pk=world.tenant.pk), actor=None))
    queued = committed(lambda: _jobs_of(world, status="todo"))
    assert set(queued) == {running, waiting}
