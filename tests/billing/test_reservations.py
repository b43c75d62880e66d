"""Allowance reservations and admission, one rule at a time: a grant never passes what is left
(counting what calls in flight hold), a dead call's reservation is billed from its checkpoint and
released, a soft allowance tells the owners once, a tenant's share refuses with 429 + Retry-After,
and password hashing past its slots is a 503 with Retry-After, holding no connection."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.models import Document
from billing.models import AllowanceReservation, Plan, Subscription, TenantUsagePeriod, UsageEvent
from billing.services import period_start, quota_check
from billing.services.reservations import (
    allowance_checkpoint,
    allowance_release,
    allowance_reserve,
    reservations_expire,
)
from core.platform import admission
from core.platform.exceptions import ApplicationError
from tests.billing.conftest import record_usage
from tests.conftest import host_client
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def _hard_plan(world, *, included: int, concurrent: int = 8) -> None:  # noqa: ANN001
    Plan.objects.filter(pk=world.tenant.subscription.plan_id).update(
        hard_limit=True, included_tokens=included, concurrent_requests=concurrent
    )


def _reserve(world, *, prompt: int, max_tokens: int):  # noqa: ANN001, ANN202
    with tenant_context(world.tenant):
        return allowance_reserve(
            tenant=world.tenant,
            allowance=quota_check(tenant=world.tenant, feature="chat", model="claude-sonnet-4-6", count_request=False),
            feature="chat",
            model="claude-sonnet-4-6",
            prompt_tokens=prompt,
            max_tokens=max_tokens,
            user_id=world.member.pk,
            api_key_id=None,
        )


def _period(world) -> TenantUsagePeriod:  # noqa: ANN001
    return TenantUsagePeriod.objects.get(tenant=world.tenant, period_start=period_start())


def test_grants_count_what_calls_in_flight_hold_and_refuse_once_nothing_fits(acme):
    _hard_plan(acme, included=1_000)

    first = _reserve(acme, prompt=100, max_tokens=600)
    second = _reserve(acme, prompt=100, max_tokens=600)  # 300 left: capped

    assert (first.tokens, second.tokens) == (700, 300)
    assert second.max_output(prompt_tokens=100, limit=600) == 200
    with pytest.raises(ApplicationError) as refused:
        _reserve(acme, prompt=100, max_tokens=600)
    assert (refused.value.code, refused.value.status) == ("quota_exceeded", 402)
    allowance_release(reservation_id=first.id)
    allowance_release(reservation_id=first.id)  # twice does nothing
    assert _period(acme).reserved_tokens == 300
    assert _reserve(acme, prompt=100, max_tokens=600).tokens == 700


def test_a_dead_calls_reservation_is_billed_from_its_checkpoint_and_released(acme):
    _hard_plan(acme, included=10_000)
    reservation = _reserve(acme, prompt=500, max_tokens=1_000)
    allowance_checkpoint(reservation_id=reservation.id, input_tokens=480, output_tokens=120)
    AllowanceReservation.objects.filter(pk=reservation.id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    # Other tests' killed processes may have left reservations of their own: count only this one.
    assert reservations_expire() >= 1
    assert not AllowanceReservation.objects.filter(pk=reservation.id).exists()
    reservations_expire()  # settled once: a second run bills nothing twice

    event = UsageEvent.objects.get(tenant=acme.tenant, request_key=f"reservation:{reservation.id}")
    assert (event.input_tokens, event.output_tokens, event.user_id) == (480, 120, acme.member.pk)
    period = _period(acme)
    assert (period.tokens_used, period.reserved_tokens) == (600, 0)


def test_a_live_calls_checkpoint_keeps_its_reservation(acme):
    _hard_plan(acme, included=10_000)
    reservation = _reserve(acme, prompt=500, max_tokens=1_000)
    AllowanceReservation.objects.filter(pk=reservation.id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    allowance_checkpoint(reservation_id=reservation.id, input_tokens=500, output_tokens=10)

    reservations_expire()
    assert AllowanceReservation.objects.filter(pk=reservation.id).exists()
    assert _period(acme).reserved_tokens == 1_500


def test_a_soft_allowance_tells_the_owners_once_when_it_is_passed(acme, django_capture_on_commit_callbacks):
    Subscription.objects.filter(tenant=acme.tenant).update(plan=Plan.objects.get(slug="pro"))
    included = Plan.objects.get(slug="pro").included_tokens
    record_usage(acme.tenant, tokens=included - 10)
    with tenant_context(acme.tenant), django_capture_on_commit_callbacks(execute=True):
        quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")
        assert mail.outbox == []  # not passed yet
        record_usage(acme.tenant, tokens=20)
        quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")
        quota_check(tenant=acme.tenant, feature="chat", model="claude-sonnet-4-6")

    told = [message for message in mail.outbox if acme.owner.email in message.to]
    assert len(told) == 1
    assert "used its included tokens" in told[0].subject
    assert f"{acme.tenant.url}billing/" in told[0].body
    assert not [message for message in mail.outbox if acme.member.email in message.to]


def test_a_tenant_past_its_share_of_summaries_gets_429_with_retry_after(acme, fake_anthropic):
    _hard_plan(acme, included=10**9, concurrent=1)
    with tenant_context(acme.tenant):
        document = Document.objects.create(title="Report", content="Findings. " * 50)
    held = admission.tenant_slot(schema_name=acme.tenant.schema_name, limit=1)
    held.acquire()  # another summary of this tenant is in flight
    try:
        response = acme.client(acme.owner_token).post(f"/api/documents/{document.pk}/summarise/")
    finally:
        held.release()

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "tenant_busy"
    assert int(response["Retry-After"]) > 0
    assert fake_anthropic.requests == []
    assert acme.client(acme.owner_token).post(f"/api/documents/{document.pk}/summarise/").status_code == 200


def test_logins_past_the_hashing_slots_get_503_with_retry_after_and_no_connection_held(acme, settings):
    settings.PASSWORD_HASHING_WAIT_SECONDS = 0.2
    slots = admission._hashing_slots()
    taken = 0
    while slots.acquire(blocking=False):  # every slot busy with someone else's hash
        taken += 1
    try:
        client = host_client(acme.host)
        client.raise_request_exception = False
        response = client.post("/api/auth/login/", {"email": acme.member.email, "password": PASSWORD}, format="json")
        page = client.post("/login/", {"username": acme.member.email, "password": PASSWORD})
    finally:
        for _ in range(taken):
            slots.release()

    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "server_busy"
    assert response["Retry-After"] == "1"
    assert page.status_code == 503 and page["Retry-After"] == "1"
    assert (
        acme.client()
        .post("/api/auth/login/", {"email": acme.member.email, "password": PASSWORD}, format="json")
        .status_code
        == 200
    )


def test_hashing_gives_the_pooled_connection_back_first():
    seen: list[object] = []

    def hash_outside_a_transaction() -> None:
        connection.ensure_connection()
        with admission.password_hashing_admitted():
            seen.append(connection.connection)
        connection.close()

    thread = threading.Thread(target=hash_outside_a_transaction)
    thread.start()
    thread.join(30)
    assert seen == [None]


def test_a_hash_runs_below_the_priority_of_serving():
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    serving = niceness()
    assert admission.password_hash(niceness) == serving + admission.HASHING_NICENESS
    assert niceness() == serving  # the caller's own thread is untouched
