import datetime as dt
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from django_tenants.utils import tenant_context

from ai.llm import Usage
from ai.models import AgentAction, Document
from billing.models import Plan, Subscription, TenantUsagePeriod, UsageEvent
from billing.services import period_start, quota_check, usage_record
from billing.services import quota as quota_module
from core.platform.exceptions import ApplicationError
from tenants.models import Tenant
from tests.billing.conftest import bare_tenant, record_usage


def make_document(world) -> Document:
    with tenant_context(world.tenant):
        return Document.objects.create(
            title="Cats", content="Cats purr when they are content. " * 30, status=Document.Status.READY
        )


def summarise(world, document):
    return world.client(world.member_token).post(f"/api/documents/{document.pk}/summarise/")


def test_a_call_writes_one_ledger_row_with_its_cost_and_bumps_the_period_total(acme):
    with tenant_context(acme.tenant):
        event = usage_record(
            tenant_id=acme.tenant.pk,
            user_id=acme.member.pk,
            feature="chat",
            model="claude-sonnet-4-6",
            usage=Usage(
                input_tokens=1000, output_tokens=100, cache_creation_input_tokens=200, cache_read_input_tokens=1000
            ),
            request_key="message:1",
        )

    assert event.total_tokens == 2300
    # $3 / $15 / $3.75 / $0.30 per million tokens are micro-dollars per token.
    assert event.cost_micros == 1000 * 3 + 100 * 15 + 200 * 3.75 + 1000 * 0.30
    assert (event.tenant_id, event.meter_status) == (acme.tenant.pk, "pending")
    period = TenantUsagePeriod.objects.get(tenant=acme.tenant, period_start=period_start())
    assert (period.tokens_used, period.cost_micros) == (2300, event.cost_micros)


def test_a_rolled_back_call_leaves_no_usage_behind(acme):
    with pytest.raises(RuntimeError), tenant_context(acme.tenant), transaction.atomic():
        usage_record(
            tenant_id=acme.tenant.pk,
            user_id=None,
            feature="chat",
            model="x",
            usage=Usage(input_tokens=5),
            request_key="message:9",
        )
        raise RuntimeError("the Message insert failed")

    assert not UsageEvent.objects.exists()
    assert not TenantUsagePeriod.objects.filter(tenant=acme.tenant, tokens_used__gt=0).exists()


def test_calls_without_tokens_are_kept_but_never_metered(acme):
    event = record_usage(acme.tenant, tokens=0)

    assert event.meter_status == "skipped"


def _in_thread(work) -> None:
    """Run ``work`` on its own connection, committing for real (the test's transaction is not its)."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)


def test_concurrent_usage_for_one_tenant_loses_no_update(db):
    """Threads commit for real, racing on the first row of the period; the total equals the ledger."""
    threads_count, calls_each = 8, 25
    name = f"race{uuid.uuid4().hex[:10]}"
    made: list[Tenant] = []
    # A tenant of its own, committed, so no other test's rows or locks are in the way.
    _in_thread(lambda: made.append(bare_tenant(name, "pro")))
    (tenant,) = made
    start = threading.Barrier(threads_count)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            start.wait(10)
            with tenant_context(tenant):
                for i in range(calls_each):
                    usage = Usage(input_tokens=n + 1, output_tokens=i)
                    usage_record(
                        tenant_id=tenant.pk,
                        user_id=None,
                        feature="chat",
                        model="claude-haiku-4-5",
                        usage=usage,
                        request_key=f"race-{n}-{i}",
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    try:
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(60)
        assert errors == []
        ledger = UsageEvent.objects.filter(tenant=tenant)
        assert ledger.count() == threads_count * calls_each
        expected = sum((n + 1 + i) for n in range(threads_count) for i in range(calls_each))
        assert ledger.aggregate(total=Sum("total_tokens"))["total"] == expected
        period = TenantUsagePeriod.objects.get(tenant=tenant, period_start=period_start())
        assert period.tokens_used == expected
        assert period.cost_micros == ledger.aggregate(cost=Sum("cost_micros"))["cost"]
    finally:
        # A queryset delete: the tenant has no schema to drop; its usage rows cascade.
        _in_thread(lambda: Tenant.objects.filter(pk=tenant.pk).delete())


def test_two_tenants_first_calls_do_not_collide_in_the_ledger(acme, globex, fake_anthropic):
    """Both tenants' first AgentAction has id 1; their usage rows are keyed per tenant."""
    for world in (acme, globex):
        assert summarise(world, make_document(world)).status_code == 200

    keys = set(UsageEvent.objects.values_list("tenant__subdomain", "request_key"))
    assert {(subdomain, key.split(":")[0]) for subdomain, key in keys} == {("acme", "action"), ("globex", "action")}


def test_usage_api_shows_the_period_allowance_and_features(acme, globex):
    record_usage(acme.tenant, tokens=1000, feature="summarise")
    record_usage(acme.tenant, tokens=400, feature="chat")
    record_usage(acme.tenant, tokens=100, feature="chat")

    body = acme.client(acme.member_token).get("/api/usage/").json()

    start = period_start()
    assert body["period_start"] == start.isoformat()
    assert body["period_end"] == (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1).isoformat()
    assert (body["used"], body["included"], body["remaining"], body["hard_limit"]) == (1500, 200_000, 198_500, True)
    assert body["by_feature"]["chat"]["tokens"] == 500
    assert body["by_feature"]["summarise"]["tokens"] == 1000
    assert set(body["by_feature"]["chat"]) == {"tokens", "input_tokens", "output_tokens", "cost_micros"}
    assert globex.client(globex.owner_token).get("/api/usage/").json()["used"] == 0


def test_usage_api_is_for_members_only(acme, globex):
    assert acme.client(globex.owner_token).get("/api/usage/").status_code == 403
    assert acme.client().get("/api/usage/").status_code == 401


def test_summarise_over_a_hard_limit_is_refused_with_402_before_calling_the_model(acme, fake_anthropic):
    document = make_document(acme)
    record_usage(acme.tenant, tokens=200_000)
    with tenant_context(acme.tenant):
        actions_before = AgentAction.objects.count()

    response = summarise(acme, document)

    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert (error["used"], error["included"]) == (200_000, 200_000)
    assert fake_anthropic.requests == []
    with tenant_context(acme.tenant):
        assert AgentAction.objects.count() == actions_before


def test_summarise_with_room_left_runs_within_what_is_left(acme, fake_anthropic):
    document = make_document(acme)
    record_usage(acme.tenant, tokens=199_000)

    assert summarise(acme, document).status_code == 200
    assert fake_anthropic.requests[-1]["max_tokens"] <= 1_000


def test_a_summary_that_does_not_fit_what_is_left_is_refused_before_any_call(acme, fake_anthropic):
    document = make_document(acme)
    record_usage(acme.tenant, tokens=199_999)

    response = summarise(acme, document)

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "quota_exceeded"
    assert fake_anthropic.requests == []


def test_a_plan_with_overage_is_not_cut_off_at_its_allowance(acme, fake_anthropic):
    Subscription.objects.filter(tenant=acme.tenant).update(plan=Plan.objects.get(slug="pro"))
    document = make_document(acme)
    record_usage(acme.tenant, tokens=6_000_000)

    assert summarise(acme, document).status_code == 200


def test_a_plan_limited_to_other_models_refuses_with_402(acme, fake_anthropic):
    Plan.objects.filter(slug="free").update(allowed_models=["claude-haiku-4-5"])

    response = summarise(acme, make_document(acme))

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "model_not_allowed"


def test_too_many_ai_requests_a_minute_get_429_until_the_next_minute(
    acme, globex, fake_anthropic, settings, monkeypatch
):
    settings.TENANT_RATE_LIMIT_PER_MINUTE = 2
    now = [1_800_000_000.0 + 15]  # 15 s into a minute
    monkeypatch.setattr(quota_module, "_clock", lambda: now[0])
    document = make_document(acme)

    statuses = [summarise(acme, document).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    limited = summarise(acme, document)
    assert (limited.json()["error"]["code"], limited.json()["error"]["retry_after"]) == ("rate_limited", 45)
    assert limited["Retry-After"] == "45"
    assert summarise(globex, make_document(globex)).status_code == 200  # the limit is per tenant
    now[0] += 60
    assert summarise(acme, document).status_code == 200


def test_the_quota_check_is_one_query_whatever_the_ledger_size(acme, django_assert_num_queries):
    for _ in range(50):
        record_usage(acme.tenant, tokens=10)

    with tenant_context(acme.tenant):
        quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")
        with django_assert_num_queries(1):  # the search_path was set by the call before
            quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")


def test_the_quota_check_raises_the_same_error_for_every_transport(acme):
    record_usage(acme.tenant, tokens=200_000)

    with tenant_context(acme.tenant), pytest.raises(ApplicationError) as raised:
        quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")

    assert (raised.value.code, raised.value.status) == ("quota_exceeded", 402)
