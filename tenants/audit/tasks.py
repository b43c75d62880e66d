"""The audit log's retention job: entries older than AUDIT_RETENTION_DAYS are deleted once a day."""

from __future__ import annotations

import logging

from django.conf import settings

from core.platform.jobs import app, public_task
from tenants.audit.services import audit_prune

logger = logging.getLogger(__name__)


@app.periodic(cron=settings.AUDIT_PRUNE_CRON)
@public_task(name="audit.prune", queue="maintenance", queueing_lock="audit.prune")
def audit_prune_job(timestamp: int) -> None:
    deleted = audit_prune()
    if deleted:
        logger.info("audit retention: deleted %s entries older than %s days", deleted, settings.AUDIT_RETENTION_DAYS)
