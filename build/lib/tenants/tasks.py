"""The tenants app's jobs: keep warm spare schemas ready for the next signups."""

from __future__ import annotations

from django.conf import settings

from core.platform.jobs import app, public_task
from tenants.services.provisioning import SPARES_REFILL_JOB, spares_refill


@public_task(name=SPARES_REFILL_JOB, queue="provisioning", queueing_lock=SPARES_REFILL_JOB)
def spares_refill_job() -> None:
    spares_refill()


@app.periodic(cron=settings.TENANT_SPARES_CHECK_CRON)
@public_task(name="tenants.spares_check", queue="provisioning", queueing_lock="tenants.spares_check")
def spares_check(timestamp: int) -> None:
    """Refill spares a crashed or failed refill left short."""
    spares_refill()
