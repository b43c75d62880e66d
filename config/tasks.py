"""The project's own jobs, for use cases that span apps: a closed workspace's billing settled, closed
workspaces deleted after their grace period, unpaid signups released (config.lifecycle)."""

from __future__ import annotations

import logging

from django.conf import settings

from billing.services.closing import BillingCloseIncomplete
from config import lifecycle
from core.platform.jobs import RetryStrategy, TransientJobError, app, public_task

logger = logging.getLogger(__name__)

# 2, 4, 8 ... 256 s: a short Stripe outage. A longer one is caught up by the hourly job below.
BILLING_CLOSE_RETRY = RetryStrategy(max_attempts=8, exponential_wait=2, retry_exceptions={TransientJobError})


@public_task(name=lifecycle.BILLING_CLOSE_JOB, queue="billing", retry=BILLING_CLOSE_RETRY)
def workspace_billing_close(*, tenant_id: int) -> None:
    try:
        lifecycle.workspace_billing_close(tenant_id=tenant_id)
    except BillingCloseIncomplete as exc:
        raise TransientJobError(str(exc)) from exc


@app.periodic(cron=settings.TENANT_DELETE_CRON)
@public_task(name="lifecycle.workspaces_delete", queue="provisioning", queueing_lock="lifecycle.workspaces_delete")
def workspaces_delete(timestamp: int) -> None:
    """Closed workspaces: billing still open is settled, those past TENANT_DELETE_GRACE_DAYS deleted."""
    lifecycle.workspaces_billing_unsettled_close()
    deleted = lifecycle.workspaces_delete_due()
    if deleted:
        logger.warning("deleted %s closed workspace(s) after their grace period: %s", len(deleted), ", ".join(deleted))


@app.periodic(cron=settings.BILLING_PENDING_RELEASE_CRON)
@public_task(name="lifecycle.signups_unpaid_release", queue="billing", queueing_lock="billing.pending_release")
def signups_unpaid_release(timestamp: int) -> None:
    """Signups left unpaid past BILLING_PENDING_RELEASE_DAYS give their subdomain back (Stripe or not)."""
    released = lifecycle.signups_unpaid_release()
    if released:
        logger.warning("released %s unpaid signup(s): %s", len(released), ", ".join(released))
