"""The AI app's jobs: thin adapters from the queue to the ingestion service, in the tenant's schema."""

from __future__ import annotations

from ai.services import documents
from core.platform.jobs import RetryStrategy, TransientJobError, tenant_task

# A provider outage is retried with backoff (2, 4, 8, 16, 32 s...) before the document shows failed.
INGEST_RETRY = RetryStrategy(max_attempts=6, exponential_wait=2, retry_exceptions={TransientJobError})


@tenant_task(name=documents.INGEST_JOB, queue="ingest", retry=INGEST_RETRY, pass_final_attempt=True)
def document_ingest(*, document_id: int, final_attempt: bool) -> None:
    documents.document_ingest(document_id=document_id, final_attempt=final_attempt)
