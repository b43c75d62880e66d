"""The AI app's jobs: thin adapters from the queue to the ingestion service, in the tenant's schema."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django_tenants.utils import get_public_schema_name

from ai.services import documents, retention, review, training_export
from core.platform.jobs import JobAborted, RetryStrategy, TransientJobError, app, job_defer, public_task, tenant_task
from tenants.models import Tenant

# A provider or database outage is retried with backoff (2, 4, 8, 16, 32 s...) before the
# document shows failed; so is a run interrupted by its worker shutting down.
INGEST_RETRY = RetryStrategy(max_attempts=6, exponential_wait=2, retry_exceptions={TransientJobError, JobAborted})


# fair: a tenant ingests one document at a time and tenants take turns, so one tenant's pile of
# large uploads never holds every worker slot (README, "Background jobs").
@tenant_task(
    name=documents.INGEST_JOB,
    queue="ingest",
    retry=INGEST_RETRY,
    fair=True,
    pass_final_attempt=True,
    pass_should_stop=True,
)
def document_ingest(*, document_id: int, final_attempt: bool, should_stop: Callable[[], bool]) -> None:
    documents.document_ingest(document_id=document_id, final_attempt=final_attempt, should_stop=should_stop)


@tenant_task(name=review.REVIEW_JOB, queue="review", retry=RetryStrategy(max_attempts=3, retry_exceptions={JobAborted}))
def review_job_run(*, job_id: int) -> None:
    review.review_job_run(job_id=job_id)


@tenant_task(
    name=training_export.EXPORT_JOB, queue="exports", retry=RetryStrategy(max_attempts=3, retry_exceptions={JobAborted})
)
def training_export_run(*, job_id: int) -> None:
    training_export.training_export_run(job_id=job_id)


@tenant_task(name=retention.PRUNE_JOB, queue="maintenance")
def agent_actions_prune() -> None:
    retention.agent_actions_prune()


@app.periodic(cron=settings.AGENT_ACTION_PRUNE_CRON)
@public_task(name="ai.agent_actions_prune_all", queue="maintenance", queueing_lock="ai.agent_actions_prune_all")
def agent_actions_prune_all(timestamp: int) -> None:
    """Once a day: a retention job per tenant (each in its own schema, one at a time per tenant)."""
    schemas = Tenant.objects.exclude(schema_name=get_public_schema_name()).values_list("schema_name", flat=True)
    for schema_name in schemas:
        job_defer(retention.PRUNE_JOB, schema_name=schema_name)
