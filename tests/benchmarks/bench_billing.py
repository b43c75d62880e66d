"""Billing's cost per LLM call (usage ledger + quota check), meter sync throughput, and exactly-once
delivery of meter events through a simulated Stripe outage."""

import datetime as dt
import random
import time
from collections import Counter

import pytest
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.llm import Usage
from billing.models import Plan, Subscription, UsageEvent
from billing.services import quota_check, usage_record, usage_sync
from billing.services.stripe import stripe_client
from tenants.models import Tenant
from tests.benchmarks.conftest import print_table, summary
from tests.billing.conftest import record_usage, stripe_fake, stripe_server  # noqa: F401 - fixtures
from tests.fakes.stripe import DROP, DROP_AFTER_COMMIT

CALLS = 1000
SYNC_EVENTS = 2000
OUTAGE_EVENTS = 1500


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


@pytest.mark.benchmark
def test_usage_record_and_quota_check_add_under_2ms_per_call(acme, settings):
    settings.TENANT_RATE_LIMIT_PER_MINUTE = 10**9  # counted, never tripped
    Subscription.objects.filter(tenant=acme.tenant).update(plan=Plan.objects.get(slug="pro"))
    baseline, quota, record, both = [], [], [], []
    usage = Usage(input_tokens=800, output_tokens=120, cache_read_input_tokens=40)
    with tenant_context(acme.tenant), connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE bench_baseline (id bigserial PRIMARY KEY, n integer NOT NULL)")
        for i in range(CALLS + 50):
            started = time.perf_counter()
            cursor.execute("INSERT INTO bench_baseline (n) VALUES (%s)", [i])
            t_baseline = _ms(started)

            started = time.perf_counter()
            quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")
            t_quota = _ms(started)
            started = time.perf_counter()
            usage_record(
                tenant_id=acme.tenant.pk,
                user_id=None,
                feature="chat",
                model="claude-sonnet-4-6",
                usage=usage,
                request_key=f"bench:{i}",
            )
            t_record = _ms(started)
            if i >= 50:  # warm-up: connection, statement caches
                baseline.append(t_baseline)
                quota.append(t_quota)
                record.append(t_record)
                both.append(t_quota + t_record)

    rows = [
        ["bare single-row INSERT (baseline)", *summary(baseline)],
        ["quota_check (rate counter + 1 query)", *summary(quota)],
        ["usage_record (INSERT + period UPSERT)", *summary(record)],
        ["added per LLM call (both)", *summary(both)],
        ["ratio to baseline", *(b / a for a, b in zip(summary(baseline), summary(both), strict=True))],
    ]
    print_table(f"Billing cost per LLM call, {CALLS} calls (ms)", ["step", "p50", "p95", "mean"], rows)
    assert summary(both)[0] < 2.0


def _customer(tenant: Tenant) -> str:
    customer = stripe_client().v1.customers.create(params={"email": f"billing@{tenant.subdomain}.test"})
    Subscription.objects.filter(tenant=tenant).update(stripe_customer_id=customer.id, status="active")
    return customer.id


@pytest.mark.benchmark
def test_meter_sync_throughput(acme, stripe_fake, settings):  # noqa: F811 - fixture
    customer = _customer(acme.tenant)
    client = stripe_client()
    bare = 300
    started = time.perf_counter()
    for i in range(bare):
        client.v1.billing.meter_events.create(
            params={
                "event_name": "bench_bare",
                "payload": {"stripe_customer_id": customer, "value": "1"},
                "identifier": f"bare-{i}",
            }
        )
    bare_rate = bare / (time.perf_counter() - started)

    for i in range(SYNC_EVENTS):
        record_usage(acme.tenant, tokens=100 + i % 50, key=f"sync:{i}")
    started = time.perf_counter()
    report = usage_sync(limit=SYNC_EVENTS)
    elapsed = time.perf_counter() - started

    assert report.sent == SYNC_EVENTS
    sync_rate = SYNC_EVENTS / elapsed
    print_table(
        "Meter sync to FakeStripe (one connection, sequential, v1 meter_events)",
        ["what", "events", "seconds", "events/s"],
        [
            ["bare SDK calls (baseline)", bare, bare / bare_rate, bare_rate],
            ["usage_sync (select, send, mark sent)", SYNC_EVENTS, elapsed, sync_rate],
            ["ratio sync/bare", "", "", sync_rate / bare_rate],
        ],
    )


@pytest.mark.benchmark
def test_meter_events_are_sent_exactly_once_through_an_outage(acme, globex, stripe_fake):  # noqa: F811 - fixture
    rng = random.Random(5)
    customers = {acme.tenant.pk: _customer(acme.tenant), globex.tenant.pk: _customer(globex.tenant)}
    for i in range(OUTAGE_EVENTS):
        record_usage(rng.choice([acme.tenant, globex.tenant]), tokens=rng.randint(1, 5000), key=f"outage:{i}")
    failures = [500, 502, 503, 429, DROP, DROP_AFTER_COMMIT, DROP_AFTER_COMMIT, DROP_AFTER_COMMIT]
    injected: Counter[str] = Counter()
    clock = timezone.now()
    runs = 0
    started = time.perf_counter()
    reports = []
    while UsageEvent.objects.filter(meter_status="pending").exists() and runs < 5000:
        runs += 1
        reports.append(usage_sync(now=clock, limit=rng.randint(1, 12)))
        if 30 <= runs < 60:  # a full outage: every call fails for a while
            stripe_fake.outage, stripe_fake.outage_status = True, rng.choice([503, DROP])
            injected["outage run"] += 1
            reports.append(usage_sync(now=clock, limit=rng.randint(1, 12)))
        elif rng.random() < 0.6:
            failure = rng.choice(failures)
            stripe_fake.fail_next = [failure]
            reports.append(usage_sync(now=clock, limit=rng.randint(1, 12)))
            if not stripe_fake.fail_next:  # consumed by a call (a run with nothing due makes none)
                injected[{DROP: "dropped", DROP_AFTER_COMMIT: "dropped after commit"}.get(failure, str(failure))] += 1
        stripe_fake.outage, stripe_fake.fail_next = False, []
        clock += dt.timedelta(hours=2) if runs % 5 == 0 else dt.timedelta(seconds=1)
    elapsed = time.perf_counter() - started

    ledger = Counter()
    for tenant_id, tokens in UsageEvent.objects.values_list("tenant_id", "total_tokens"):
        ledger[customers[tenant_id]] += tokens
    identifiers = Counter(event["identifier"] for event in stripe_fake.meter_events)
    expected = {row.meter_identifier for row in UsageEvent.objects.all()}
    exactly_once = sum(1 for identifier in expected if identifiers[identifier] == 1)
    share = 100 * exactly_once / len(expected)
    calls = sum(r.calls for r in reports)
    print_table(
        f"Meter sync through injected failures ({OUTAGE_EVENTS} events, 2 customers)",
        ["measure", "value"],
        [
            ["sync runs", len(reports)],
            ["Stripe calls", calls],
            ["failures hit", ", ".join(f"{k} x{v}" for k, v in sorted(injected.items()))],
            ["recognised duplicates (lost answers)", sum(r.duplicates for r in reports)],
            ["events at Stripe / ledger rows", f"{len(stripe_fake.meter_events)} / {len(expected)}"],
            ["sent exactly once (%)", share],
            ["Stripe totals == ledger totals", stripe_fake.meter_totals() == dict(ledger)],
            ["wall time (s)", elapsed],
        ],
    )
    assert share == 100.0
    assert stripe_fake.meter_totals() == dict(ledger)
