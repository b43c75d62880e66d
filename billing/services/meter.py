"""The meter-event outbox: pending ledger rows go to Stripe Billing Meters, each exactly once.

Exactly once comes from two halves: a row stays pending until Stripe has it, so nothing is
lost; and its ``identifier`` is fixed (tenant id + request key), so a re-send after a lost
answer gets Stripe's 400 "An event already exists with identifier ...", which means delivered.
Stripe calls happen outside any transaction; one run at a time (a PostgreSQL advisory lock),
one call at a time, so each customer sees at most one concurrent call, as v1 requires.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import stripe
from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from billing.models import Subscription, UsageEvent
from billing.services.stripe import billing_enabled, stripe_client

logger = logging.getLogger(__name__)

DUPLICATE_MESSAGE = "An event already exists with identifier"
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
_FLUSH_EVERY = 200
# pg_try_advisory_lock key: any constant bigint unique to this job.
_SYNC_LOCK_KEY = 0x5354_5241_5441_0001


@dataclass
class SyncReport:
    sent: int = 0
    duplicates: int = 0  # Stripe already had them (a lost answer earlier): delivered, not re-billed
    skipped: int = 0  # tenants without a Stripe customer
    failed: int = 0  # refused for good (e.g. older than 35 days): left for an operator
    deferred: int = 0  # a transient failure: backed off, retried by a later run
    stopped: str = ""  # why the run ended early, if it did
    calls: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.sent + self.duplicates


@contextlib.contextmanager
def _sync_lock() -> Iterator[bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_SYNC_LOCK_KEY])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [_SYNC_LOCK_KEY])


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with jitter: half fixed, half random, so failed rows spread out."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not security


def _skip_rows_without_customer() -> int:
    customers = Subscription.objects.exclude(stripe_customer_id="").values("tenant_id")
    return (
        UsageEvent.objects.filter(meter_status=UsageEvent.MeterStatus.PENDING)
        .exclude(tenant_id__in=customers)
        .update(meter_status=UsageEvent.MeterStatus.SKIPPED, meter_error="No Stripe customer: nothing to bill.")
    )


def _due_rows(*, now: dt.datetime, limit: int, tenant_id: int | None = None) -> list[UsageEvent]:
    due = Q(meter_next_attempt_at__isnull=True) | Q(meter_next_attempt_at__lte=now)
    if tenant_id is not None:
        due = Q(tenant_id=tenant_id)  # a closing tenant's rows go now, backed off or not
    return list(
        UsageEvent.objects.filter(
            due, meter_status=UsageEvent.MeterStatus.PENDING, tenant__subscription__stripe_customer_id__gt=""
        )
        .annotate(customer_id=F("tenant__subscription__stripe_customer_id"))
        .only("id", "tenant_id", "request_key", "total_tokens", "created", "meter_attempts")
        .order_by("id")[:limit]
    )


def _mark_delivered(ids: list[int]) -> None:
    if ids:
        UsageEvent.objects.filter(id__in=ids, meter_status=UsageEvent.MeterStatus.PENDING).update(
            meter_status=UsageEvent.MeterStatus.SENT,
            meter_sent_at=timezone.now(),
            meter_attempts=F("meter_attempts") + 1,
            meter_error="",
            meter_next_attempt_at=None,
        )
        ids.clear()


def _mark_failed(row: UsageEvent, error: str, *, now: dt.datetime, retry: bool) -> None:
    attempts = row.meter_attempts + 1
    UsageEvent.objects.filter(pk=row.pk).update(
        meter_status=UsageEvent.MeterStatus.PENDING if retry else UsageEvent.MeterStatus.FAILED,
        meter_attempts=attempts,
        meter_error=error[:300],
        meter_next_attempt_at=now + dt.timedelta(seconds=backoff_seconds(attempts)) if retry else None,
    )


def _error_text(exc: stripe.StripeError) -> str:
    status = getattr(exc, "http_status", None)
    return " ".join(f"{type(exc).__name__} {status or ''}: {exc.user_message or exc}".split())


def _is_duplicate(exc: stripe.StripeError) -> bool:
    return getattr(exc, "http_status", None) == 400 and DUPLICATE_MESSAGE in str(exc.user_message or exc)


def usage_sync(*, limit: int = 2000, now: dt.datetime | None = None, tenant_id: int | None = None) -> SyncReport:
    """Send up to ``limit`` due pending usage rows to Stripe as meter events (only ``tenant_id``'s,
    backed off or not, when it is given: a workspace being closed).

    A refusal for good marks the row failed; a transient failure backs the row off with jitter,
    and a sign of an outage (5xx, connection, timeout, 429, bad key) ends the run at once so a
    struggling Stripe is not hammered. ``now`` stands in for the clock (tests, benchmarks).
    """
    report = SyncReport()
    if not billing_enabled():
        report.stopped = "billing disabled"
        return report
    with _sync_lock() as acquired:
        if not acquired:
            report.stopped = "another sync is running"
            return report
        now = now or timezone.now()
        report.skipped = _skip_rows_without_customer()
        rows = _due_rows(now=now, limit=limit, tenant_id=tenant_id)
        delivered: list[int] = []
        try:
            _send(rows, report, delivered, now=now)
        finally:
            _mark_delivered(delivered)
    if report.stopped or report.failed:
        logger.warning(
            "usage sync: sent %s, duplicates %s, failed %s, deferred %s; %s",
            report.sent,
            report.duplicates,
            report.failed,
            report.deferred,
            report.stopped or "refused: " + "; ".join(report.errors[:3]),
        )
    return report


def _send(rows: list[UsageEvent], report: SyncReport, delivered: list[int], *, now: dt.datetime) -> None:
    client = stripe_client()
    latest = int(time.time())
    for row in rows:
        params = {
            "event_name": settings.STRIPE_METER_EVENT_NAME,
            "payload": {"stripe_customer_id": row.customer_id, "value": str(row.total_tokens)},  # type: ignore[attr-defined]
            "identifier": row.meter_identifier,
            # Stripe refuses timestamps more than 5 minutes ahead; a skewed clock must not make that permanent.
            "timestamp": min(int(row.created.timestamp()), latest),
        }
        report.calls += 1
        try:
            client.v1.billing.meter_events.create(params=params)  # type: ignore[arg-type]
        except stripe.InvalidRequestError as exc:
            if _is_duplicate(exc):
                report.duplicates += 1
                delivered.append(row.pk)
            else:
                # Stripe said no to this event itself: retrying cannot help.
                report.failed += 1
                report.errors.append(_error_text(exc))
                _mark_failed(row, _error_text(exc), now=now, retry=False)
            continue
        except (
            stripe.APIConnectionError,
            stripe.APIError,
            stripe.RateLimitError,
            stripe.AuthenticationError,
            stripe.PermissionError,
            stripe.IdempotencyError,
        ) as exc:
            report.deferred += 1
            report.errors.append(_error_text(exc))
            _mark_failed(row, _error_text(exc), now=now, retry=True)
            report.stopped = f"Stripe unavailable: {_error_text(exc)}"[:300]
            return
        except stripe.StripeError as exc:
            report.deferred += 1
            report.errors.append(_error_text(exc))
            _mark_failed(row, _error_text(exc), now=now, retry=True)
            continue
        report.sent += 1
        delivered.append(row.pk)
        if len(delivered) >= _FLUSH_EVERY:
            _mark_delivered(delivered)


def usage_pending_count() -> int:
    return UsageEvent.objects.filter(meter_status=UsageEvent.MeterStatus.PENDING).count()
