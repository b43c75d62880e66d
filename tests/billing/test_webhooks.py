import datetime as dt
import json
import time

import pytest
from django.utils import timezone

from billing.models import Subscription, WebhookEvent
from billing.services import subscriptions_enforce_grace
from billing.services.subscriptions import NONPAYMENT_REASON
from tenants.models import Tenant
from tenants.services.status import tenant_suspend
from tests.billing.conftest import ENTERPRISE_PRICE, WEBHOOK_SECRET, event_at, invoice
from tests.fakes.stripe import make_event, sign_webhook


def _subscription_event(paid, event_type, *, seconds_ago=0, **changes):
    return event_at(event_type, {**paid.subscription, **changes}, seconds_ago=seconds_ago)


@pytest.mark.parametrize(
    "tamper",
    ["missing", "wrong_secret", "body_changed", "stale_timestamp", "garbage_header"],
)
def test_a_bad_or_missing_signature_is_refused_and_changes_nothing(pending_tenant, stripe_fake, send_webhook, tamper):
    _, event = stripe_fake.complete_checkout(pending_tenant.session_id)
    body = json.dumps(event).encode()
    signature = {
        "missing": "",
        "wrong_secret": sign_webhook(body, "whsec_not_ours"),
        "body_changed": sign_webhook(body.replace(b"complete", b"completf"), WEBHOOK_SECRET),
        "stale_timestamp": sign_webhook(body, WEBHOOK_SECRET, timestamp=int(time.time()) - 301),
        "garbage_header": "not-a-signature",
    }[tamper]

    response = send_webhook(event, body=body, signature=signature)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert not WebhookEvent.objects.exists()
    assert pending_tenant.refresh().status == Tenant.Status.PENDING_PAYMENT


def test_without_a_webhook_secret_events_are_refused_for_a_retry_later(
    pending_tenant, stripe_fake, send_webhook, settings
):
    _, event = stripe_fake.complete_checkout(pending_tenant.session_id)
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = send_webhook(event)

    assert response.status_code == 503
    assert not WebhookEvent.objects.exists()


def test_a_replayed_event_is_acknowledged_and_does_nothing_twice(pending_tenant, stripe_fake, send_webhook):
    _, event = stripe_fake.complete_checkout(pending_tenant.session_id)
    assert send_webhook(event).json()["duplicate"] is False
    # An operator suspends the tenant; a replay of the activation must not undo that.
    tenant_suspend(tenant=pending_tenant.refresh(), reason="Fraud review")

    replay = send_webhook(event)

    assert replay.status_code == 200
    assert replay.json()["duplicate"] is True
    assert WebhookEvent.objects.filter(event_id=event["id"]).count() == 1
    assert pending_tenant.refresh().status == Tenant.Status.SUSPENDED


def test_unknown_event_types_are_stored_and_acknowledged(send_webhook, stripe_fake):
    event = make_event("customer.tax_id.created", {"id": "txi_1", "object": "tax_id"})

    response = send_webhook(event)

    assert response.status_code == 200
    stored = WebhookEvent.objects.get(event_id=event["id"])
    assert (stored.type, stored.payload["data"]["object"]["id"]) == ("customer.tax_id.created", "txi_1")
    assert stored.outcome.startswith("stored")


def test_the_webhook_needs_no_csrf_token_and_only_takes_post(stripe_fake, send_webhook):
    from rest_framework.test import APIClient

    strict = APIClient(HTTP_HOST="localhost", enforce_csrf_checks=True)
    event = make_event("ping", {})
    body = json.dumps(event).encode()
    response = strict.post(
        "/api/billing/webhook/",
        data=body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_webhook(body, WEBHOOK_SECRET),
    )

    assert response.status_code == 200
    assert strict.get("/api/billing/webhook/").status_code == 405


def test_a_failure_while_acting_keeps_no_event_so_stripes_retry_applies_it(
    pending_tenant, stripe_fake, send_webhook, monkeypatch
):
    from billing.services import webhooks

    _, event = stripe_fake.complete_checkout(pending_tenant.session_id)
    original = webhooks._HANDLERS["checkout.session.completed"]

    def broken(obj, at):
        original(obj, at)  # changes made before the failure are rolled back with the event row
        raise RuntimeError("database hiccup")

    monkeypatch.setitem(webhooks._HANDLERS, "checkout.session.completed", broken)
    with pytest.raises(RuntimeError):
        send_webhook(event)
    assert not WebhookEvent.objects.exists()
    assert pending_tenant.refresh().status == Tenant.Status.PENDING_PAYMENT

    monkeypatch.setitem(webhooks._HANDLERS, "checkout.session.completed", original)
    assert send_webhook(event).status_code == 200
    assert pending_tenant.refresh().status == Tenant.Status.ACTIVE


def test_subscription_created_before_checkout_completed_also_activates(pending_tenant, stripe_fake, send_webhook):
    subscription, completed = stripe_fake.complete_checkout(pending_tenant.session_id)
    created = next(e for e in stripe_fake.events if e["type"] == "customer.subscription.created")

    assert send_webhook(created).json()["outcome"].endswith("tenant activated")
    assert send_webhook(completed).status_code == 200

    row = pending_tenant.row
    assert (row.status, row.stripe_subscription_id) == ("active", subscription["id"])
    assert row.current_period_end == dt.datetime.fromtimestamp(
        subscription["items"]["data"][0]["current_period_end"], tz=dt.UTC
    )
    assert pending_tenant.refresh().status == Tenant.Status.ACTIVE


def test_an_older_event_arriving_late_does_not_roll_the_state_back(paid_tenant, send_webhook):
    newer = _subscription_event(paid_tenant, "customer.subscription.updated", status="past_due")
    older = _subscription_event(paid_tenant, "customer.subscription.updated", seconds_ago=60, status="active")

    assert send_webhook(newer).status_code == 200
    response = send_webhook(older)

    assert response.status_code == 200
    assert response.json()["outcome"] == "ignored: older than the last event applied"
    assert paid_tenant.row.status == "past_due"


def test_a_plan_change_in_stripe_changes_the_tenants_plan(paid_tenant, send_webhook):
    items = {
        "object": "list",
        "data": [{"id": "si_1", "price": {"id": ENTERPRISE_PRICE}, "current_period_end": int(time.time()) + 86400}],
    }
    event = _subscription_event(paid_tenant, "customer.subscription.updated", items=items)

    assert send_webhook(event).status_code == 200

    assert Subscription.objects.get(tenant=paid_tenant.tenant).plan.slug == "enterprise"


def test_a_deleted_subscription_downgrades_the_tenant_to_free(paid_tenant, send_webhook):
    event = _subscription_event(paid_tenant, "customer.subscription.deleted", status="canceled")

    assert send_webhook(event).status_code == 200

    tenant = paid_tenant.refresh()
    assert (tenant.status, Subscription.objects.get(tenant=tenant).plan.slug) == (Tenant.Status.ACTIVE, "free")
    assert paid_tenant.row.status == "canceled"


def test_a_failed_payment_is_past_due_then_suspended_after_the_grace_period_then_paid_reactivates(
    paid_tenant, send_webhook, settings
):
    settings.STRIPE_PAST_DUE_GRACE_DAYS = 7

    assert send_webhook(event_at("invoice.payment_failed", invoice(paid_tenant))).status_code == 200
    row = paid_tenant.row
    assert row.status == "past_due"
    assert row.past_due_since is not None
    assert paid_tenant.refresh().status == Tenant.Status.ACTIVE

    assert subscriptions_enforce_grace(now=timezone.now() + dt.timedelta(days=6)) == []
    assert paid_tenant.refresh().status == Tenant.Status.ACTIVE

    # A second failure (Stripe retries the charge) keeps the original start of the grace period.
    send_webhook(event_at("invoice.payment_failed", invoice(paid_tenant)))
    assert paid_tenant.row.past_due_since == row.past_due_since

    assert subscriptions_enforce_grace(now=timezone.now() + dt.timedelta(days=7, minutes=1)) == [paid_tenant.tenant.pk]
    tenant = paid_tenant.refresh()
    assert (tenant.status, tenant.suspended_reason) == (Tenant.Status.SUSPENDED, NONPAYMENT_REASON)
    assert paid_tenant.client(paid_tenant.owner_token).get("/api/documents/").status_code == 403

    paid = send_webhook(event_at("invoice.paid", invoice(paid_tenant, status="paid"), seconds_ago=-1))
    assert paid.json()["outcome"] == "invoice paid; tenant reactivated"
    assert paid_tenant.refresh().status == Tenant.Status.ACTIVE
    assert (paid_tenant.row.status, paid_tenant.row.past_due_since) == ("active", None)
    assert paid_tenant.client(paid_tenant.owner_token).get("/api/documents/").status_code == 200


def test_a_late_payment_failure_after_the_payment_is_ignored(paid_tenant, send_webhook):
    send_webhook(event_at("invoice.paid", invoice(paid_tenant, status="paid")))

    late = send_webhook(event_at("invoice.payment_failed", invoice(paid_tenant), seconds_ago=120))

    assert late.json()["outcome"] == "ignored: older than the last event applied"
    assert (paid_tenant.row.status, paid_tenant.row.past_due_since) == ("active", None)


def test_payment_does_not_lift_a_suspension_an_operator_made(paid_tenant, send_webhook):
    tenant_suspend(tenant=paid_tenant.tenant, reason="Abuse report")

    send_webhook(event_at("invoice.paid", invoice(paid_tenant, status="paid"), seconds_ago=-1))

    assert paid_tenant.refresh().status == Tenant.Status.SUSPENDED


def test_grace_enforcement_suspends_only_active_tenants_past_due_too_long(paid_tenant, acme, settings):
    settings.STRIPE_PAST_DUE_GRACE_DAYS = 7
    Subscription.objects.filter(tenant=acme.tenant).update(
        status="past_due", past_due_since=timezone.now() - dt.timedelta(days=1)
    )
    Subscription.objects.filter(tenant=paid_tenant.tenant).update(
        status="past_due", past_due_since=timezone.now() - dt.timedelta(days=8)
    )

    assert subscriptions_enforce_grace() == [paid_tenant.tenant.pk]
    assert subscriptions_enforce_grace() == []  # already suspended: nothing twice
    assert Tenant.objects.get(pk=acme.tenant.pk).status == Tenant.Status.ACTIVE


def test_events_for_customers_we_do_not_know_are_stored_and_ignored(stripe_fake, send_webhook):
    event = make_event("invoice.paid", {"id": "in_x", "object": "invoice", "customer": "cus_nobody"})

    response = send_webhook(event)

    assert response.status_code == 200
    assert WebhookEvent.objects.get(event_id=event["id"]).outcome == "ignored: no tenant for this invoice"


def _valid_event():
    return make_event("customer.subscription.updated", {"id": "sub_1", "customer": "cus_1", "status": "active"})


def _with(change):
    event = _valid_event()
    change(event)
    return event


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(json.dumps([_valid_event()]).encode(), None, id="json-array"),
        pytest.param(json.dumps("just a string").encode(), None, id="json-string"),
        pytest.param(json.dumps(_with(lambda e: e.update(created=10**15))).encode(), "created", id="created-1e15"),
        pytest.param(json.dumps(_with(lambda e: e.update(created=-5))).encode(), "created", id="created-negative"),
        pytest.param(json.dumps(_with(lambda e: e.update(created="1700000000"))).encode(), "created", id="created-str"),
        pytest.param(json.dumps(_with(lambda e: e.update(id="evt_" + "x" * 496))).encode(), "id", id="id-500-chars"),
        pytest.param(json.dumps(_with(lambda e: e.pop("id"))).encode(), "id", id="id-missing"),
        pytest.param(json.dumps(_with(lambda e: e.update(type=["a"]))).encode(), "type", id="type-list"),
        pytest.param(json.dumps(_with(lambda e: e.update(data="x"))).encode(), "data", id="data-string"),
        pytest.param(
            json.dumps(_with(lambda e: e["data"].update(object="sub_1"))).encode(), "data", id="data-object-string"
        ),
        pytest.param(
            json.dumps(_with(lambda e: e["data"]["object"].update(customer={"id": 1}))).encode(),
            "data",
            id="customer-object",
        ),
        pytest.param(
            json.dumps(_with(lambda e: e["data"]["object"].update(items={"data": "nope"}))).encode(),
            "data",
            id="items-data-string",
        ),
        pytest.param(
            json.dumps(_with(lambda e: e["data"]["object"].update(current_period_end=10**15))).encode(),
            "data",
            id="period-end-1e15",
        ),
        pytest.param(
            json.dumps(_with(lambda e: e["data"]["object"].update(metadata=["subdomain"]))).encode(),
            "data",
            id="metadata-list",
        ),
        pytest.param(
            json.dumps(_with(lambda e: e["data"]["object"].update(note="NUL \x00"))).encode(), None, id="nul-anywhere"
        ),
        pytest.param(
            b'{"id": "evt_1", "type": "x", "created": 1700000000, "data": {"object": {"s": "\\ud800"}}}',
            None,
            id="lone-surrogate",
        ),
        pytest.param(b"\xff\xfe not utf-8", None, id="not-utf8"),
        pytest.param(b"{not json", None, id="not-json"),
    ],
)
def test_a_signed_but_malformed_event_is_a_400_and_stores_nothing(stripe_fake, send_webhook, body, field):
    response = send_webhook({}, body=body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["message"]
    if field:
        assert field in error["fields"]
    assert not WebhookEvent.objects.exists()


def test_a_well_formed_event_with_unknown_fields_and_nulls_is_accepted(stripe_fake, send_webhook):
    event = _with(lambda e: e["data"]["object"].update(customer=None, metadata=None, items=None, extra={"a": [1]}))

    response = send_webhook(event)

    assert response.status_code == 200, response.content
