"""Billing's periodic jobs: usage to Stripe Billing Meters, the past-due grace period, expired reservations
(unpaid signups are released by config.tasks: closing a workspace spans apps).

Each runs once per period whatever the number of workers (procrastinate defers a periodic job
once per timestamp); the meter sync also holds a PostgreSQL advisory lock, so a slow run and the
next one never send at the same time. The two Stripe jobs do nothing while Stripe is not configured.
"""

from __future__ import annotations

import logging

from django.conf import settings

from billing.services import billing_enabled, subscriptions_enforce_grace, usage_sync
from billing.services.reservations import reservations_expire
from core.platform.jobs import app, public_task

logger = logging.getLogger(__name__)


@app.periodic(cron=settings.BILLING_METER_SYNC_CRON)
@public_task(name="billing.meter_sync", queue="billing", queueing_lock="billing.meter_sync")
def meter_sync(timestamp: int) -> None:
    if billing_enabled():
        report = usage_sync(limit=settings.BILLING_SYNC_BATCH)
        logger.info("meter sync: %s", report)


@app.periodic(cron=settings.BILLING_GRACE_CRON)
@public_task(name="billing.grace_enforce", queue="billing", queueing_lock="billing.grace_enforce")
def grace_enforce(timestamp: int) -> None:
    if billing_enabled():
        suspended = subscriptions_enforce_grace()
        if suspended:
            logger.warning("suspended %s tenant(s) past due beyond the grace period", len(suspended))


@app.periodic(cron=settings.BILLING_RESERVATIONS_EXPIRE_CRON)
@public_task(queue="billing", queueing_lock="billing.reservations_expire")
def reservations_expire_job(timestamp: int) -> None:
    """Reservations of calls whose process died: what they checkpointed is billed, the rest released."""
    expired = reservations_expire()
    if expired:
        logger.warning("settled %s reservation(s) left by calls that never finished", expired)
