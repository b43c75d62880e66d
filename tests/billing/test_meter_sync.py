import datetime as dt
import threading
import time
from collections import Counter

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from billing.models import Subscription, UsageEvent
from billing.services import usage_sync
from billing.services.meter import _SYNC_LOCK_KEY
from billing.services.stripe import stripe_client
from billing.tasks import grace_enforce, meter_sync
from tenants.models import Tenant
from tests.billing.conftest import record_usage
from tests.fakes.stripe import DROP, DROP_AFTER_COMMIT, FakeStripe


def customer_for(world, fake: FakeStripe) -> str:
    customer = stripe_client().v1.customers.create(params={"email": world.owner.email})
    Subscription.objects.filter(tenant=world.tenant).update(stripe_customer_id=customer.id, status="active")
    return customer.id


def ledger_totals(*customers_by_tenant) -> dict[str, int]:
    return {
        customer: sum(UsageEvent.objects.filter(tenant=tenant).values_list("total_tokens", flat=True))
        for tenant, customer in customers_by_tenant
    }


def test_pending_usage_becomes_meter_events_with_the_rows_identity(acme, globex, stripe_fake, settings):
    customer = customer_for(acme, stripe_fake)
    billed = record_usage(acme.tenant, tokens=1234)
    free = record_usage(globex.tenant, tokens=50)

    report = usage_sync()

    assert (report.sent, report.skipped, report.stopped) == (1, 1, "")
    (event,) = stripe_fake.meter_events
    assert event["event_name"] == settings.STRIPE_METER_EVENT_NAME
    assert event["payload"] == {"stripe_customer_id": customer, "value": "1234"}
    assert event["identifier"] == f"{acme.tenant.pk}-{billed.request_key}"
    assert event["timestamp"] == int(billed.created.timestamp())
    billed.refresh_from_db()
    assert (billed.meter_status, billed.meter_attempts, billed.meter_error) == ("sent", 1, "")
    assert billed.meter_sent_at is not None
    free.refresh_from_db()
    assert free.meter_status == "skipped"
    assert usage_sync().calls == 0


def test_same_request_key_in_two_tenants_is_two_events(acme, globex, stripe_fake):
    customer_for(acme, stripe_fake)
    customer_for(globex, stripe_fake)
    record_usage(acme.tenant, tokens=10, key="action:1")
    record_usage(globex.tenant, tokens=20, key="action:1")

    assert usage_sync().sent == 2
    assert sorted(stripe_fake.meter_totals().values()) == [10, 20]


def test_an_event_stripe_already_has_counts_as_delivered_not_billed_again(acme, stripe_fake):
    customer = customer_for(acme, stripe_fake)
    row = record_usage(acme.tenant, tokens=300)
    # Sent earlier by a run whose answer was lost before we could mark the row.
    stripe_client().v1.billing.meter_events.create(
        params={
            "event_name": "strata_tokens",
            "payload": {"stripe_customer_id": customer, "value": "300"},
            "identifier": row.meter_identifier,
        }
    )

    report = usage_sync()

    assert (report.sent, report.duplicates, report.deferred) == (0, 1, 0)
    row.refresh_from_db()
    assert row.meter_status == "sent"
    assert stripe_fake.meter_totals() == {customer: 300}


def test_a_transient_failure_backs_off_with_jitter_and_stops_the_run(acme, stripe_fake):
    customer_for(acme, stripe_fake)
    first, second, third = (record_usage(acme.tenant, tokens=n) for n in (1, 2, 3))
    stripe_fake.fail_next = [500]
    before = timezone.now()

    report = usage_sync()

    assert (report.calls, report.deferred, report.sent) == (1, 1, 0)
    assert "APIError 500" in report.stopped
    first.refresh_from_db()
    assert (first.meter_status, first.meter_attempts) == ("pending", 1)
    assert "500" in first.meter_error
    assert before + dt.timedelta(seconds=15) <= first.meter_next_attempt_at <= timezone.now() + dt.timedelta(seconds=30)

    # The next run skips the row that is backing off and sends the rest.
    assert usage_sync().sent == 2
    assert UsageEvent.objects.get(pk=first.pk).meter_status == "pending"
    assert usage_sync(now=timezone.now() + dt.timedelta(minutes=1)).sent == 1
    assert sorted(int(e["payload"]["value"]) for e in stripe_fake.meter_events) == [1, 2, 3]


def test_an_event_stripe_refuses_for_good_is_failed_not_retried(acme, stripe_fake):
    customer_for(acme, stripe_fake)
    row = record_usage(acme.tenant, tokens=10)
    UsageEvent.objects.filter(pk=row.pk).update(created=timezone.now() - dt.timedelta(days=40))

    report = usage_sync()

    assert (report.failed, report.stopped) == (1, "")
    row.refresh_from_db()
    assert row.meter_status == "failed"
    assert "35 calendar days" in row.meter_error
    assert usage_sync(now=timezone.now() + dt.timedelta(days=1)).calls == 0


# Each failure hits one call; between them some sends succeed. ("outage", x): everything fails.
FAILURES = [
    ("outage", 503),
    ("outage", DROP),
    500,
    DROP_AFTER_COMMIT,
    429,
    502,
    DROP_AFTER_COMMIT,
    DROP,
    503,
    DROP_AFTER_COMMIT,
]


def test_a_stripe_outage_loses_nothing_and_bills_nothing_twice(acme, globex, pending_tenant, stripe_fake):
    acme_customer = customer_for(acme, stripe_fake)
    billed = (acme.tenant, pending_tenant.tenant)
    for i in range(20):
        for tenant in (*billed, globex.tenant):
            record_usage(tenant, tokens=37 * i + 1)
    clock = timezone.now()
    reports = []

    for failure in FAILURES:
        reports.append(usage_sync(now=clock, limit=3))
        if isinstance(failure, tuple):
            stripe_fake.outage, stripe_fake.outage_status = True, failure[1]
        else:
            stripe_fake.fail_next = [failure]
        reports.append(usage_sync(now=clock))
        assert reports[-1].stopped and reports[-1].calls == 1  # one probe, then it backs off
        record_usage(acme.tenant, tokens=999)  # usage keeps arriving while Stripe is down
        stripe_fake.outage = False
        clock += dt.timedelta(seconds=1)  # the failed rows are still backing off: the next failure hits another row

    clock += dt.timedelta(hours=2)
    for _ in range(20):
        reports.append(usage_sync(now=clock, limit=7))
        clock += dt.timedelta(hours=2)
        if not UsageEvent.objects.filter(meter_status="pending").exists():
            break

    billed_rows = UsageEvent.objects.filter(tenant__in=billed)
    assert Counter(UsageEvent.objects.values_list("meter_status", flat=True)) == {
        "sent": billed_rows.count(),
        "skipped": 20,
    }
    expected = ledger_totals((acme.tenant, acme_customer), (pending_tenant.tenant, pending_tenant.customer_id))
    assert stripe_fake.meter_totals() == expected
    identifiers = Counter(event["identifier"] for event in stripe_fake.meter_events)
    assert max(identifiers.values()) == 1
    assert set(identifiers) == {row.meter_identifier for row in billed_rows}
    # The three calls that succeeded at Stripe but lost their answer were re-sent and recognised.
    assert sum(r.duplicates for r in reports) == 3
    assert sum(r.sent for r in reports) == billed_rows.count() - 3
    # Nothing was hammered: each failure cost its row exactly one extra attempt.
    attempts = Counter(billed_rows.values_list("meter_attempts", flat=True))
    assert attempts == {1: billed_rows.count() - len(FAILURES), 2: len(FAILURES)}


def test_sdk_retries_resolve_a_lost_answer_through_the_idempotency_key(acme, stripe_fake, settings):
    settings.STRIPE_MAX_NETWORK_RETRIES = 1
    customer = customer_for(acme, stripe_fake)
    record_usage(acme.tenant, tokens=77)
    stripe_fake.fail_next = [DROP_AFTER_COMMIT]

    report = usage_sync()

    assert (report.sent, report.duplicates) == (1, 0)
    attempts = stripe_fake.requests_to("/v1/billing/meter_events")
    assert len(attempts) == 2
    assert attempts[0].headers["Idempotency-Key"] == attempts[1].headers["Idempotency-Key"]
    assert stripe_fake.meter_totals() == {customer: 77}


def test_only_one_sync_runs_at_a_time(acme, stripe_fake):
    customer_for(acme, stripe_fake)
    record_usage(acme.tenant)
    holding, release = threading.Event(), threading.Event()

    def other_sync() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [_SYNC_LOCK_KEY])
            holding.set()
            release.wait(10)
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_SYNC_LOCK_KEY])
        connection.close()

    thread = threading.Thread(target=other_sync)
    thread.start()
    try:
        assert holding.wait(10)
        report = usage_sync()
    finally:
        release.set()
        thread.join()

    assert (report.stopped, report.calls) == ("another sync is running", 0)
    assert usage_sync().sent == 1


def test_without_stripe_usage_stays_in_the_ledger(acme):
    row = record_usage(acme.tenant)

    assert usage_sync().stopped == "billing disabled"
    assert UsageEvent.objects.get(pk=row.pk).meter_status == "pending"


def test_the_sync_usage_command_reports_what_it_sent(acme, globex, stripe_fake, capsys):
    customer_for(acme, stripe_fake)
    for _ in range(3):
        record_usage(acme.tenant)
    record_usage(globex.tenant)

    call_command("sync_usage", "--limit", "2", "--all")

    assert capsys.readouterr().out.strip() == "sent 3, duplicates 0, skipped 1, failed 0, deferred 0; 0 still pending"


def test_the_sync_usage_command_explains_local_mode(acme):
    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY is not set"):
        call_command("sync_usage")


def test_the_periodic_billing_jobs_sync_usage_and_enforce_the_grace_period(paid_tenant, stripe_fake):
    record_usage(paid_tenant.tenant, tokens=5)
    Subscription.objects.filter(tenant=paid_tenant.tenant).update(
        status="past_due", past_due_since=timezone.now() - dt.timedelta(days=30)
    )

    meter_sync(int(time.time()))
    grace_enforce(int(time.time()))

    assert UsageEvent.objects.get(tenant=paid_tenant.tenant).meter_status == UsageEvent.MeterStatus.SENT
    paid_tenant.tenant.refresh_from_db()
    assert paid_tenant.tenant.status == Tenant.Status.SUSPENDED


def test_the_periodic_billing_jobs_do_nothing_without_stripe(acme):
    record_usage(acme.tenant, tokens=5)

    meter_sync(int(time.time()))
    grace_enforce(int(time.time()))

    assert UsageEvent.objects.get(tenant=acme.tenant).meter_status == UsageEvent.MeterStatus.PENDING
