"""Closing a workspace, restoring it in the grace period and deleting it after: one path for its owner,
the operators and unpaid signups. It spans tenants, billing and the job queue, so it sits above them.

Closing stops access at once (tenants.services.status: pages, API, sockets, running answers) and
stops the tenant's jobs, in one transaction that also writes the audit entry and defers the
billing settlement; the settlement (pending usage to Stripe, then the subscription cancelled) runs
as a job outside any transaction, retried while Stripe does not answer. After
TENANT_DELETE_GRACE_DAYS a periodic job settles whatever is left, drops the schema and frees the
subdomain; the usage ledger and the audit log keep the tenant's id.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context, tenant_context
from procrastinate.contrib.django.models import ProcrastinateJob

from ai.models import Document
from ai.services.documents import document_ingest_retry
from billing.selectors import tenants_unpaid_abandoned
from billing.services import billing_enabled
from billing.services.closing import BillingCloseIncomplete, tenant_billing_close
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.jobs import app, job_defer
from tenants.audit.services import Action, Operator, audit_record
from tenants.models import Membership, Tenant
from tenants.services.status import tenant_close, tenant_delete, tenant_restore

logger = logging.getLogger(__name__)

BILLING_CLOSE_JOB = "lifecycle.workspace_billing_close"
Actor = User | Operator | None


def _grace() -> dt.timedelta:
    return dt.timedelta(days=settings.TENANT_DELETE_GRACE_DAYS)


def workspace_close(
    *,
    tenant: Tenant,
    actor: Actor,
    request: Any = None,
    grace: dt.timedelta | None = None,
    now: dt.datetime | None = None,
    reason: str = "",
) -> Tenant:
    """Close ``tenant`` now (an owner, an operator, or Strata for an unpaid signup): nobody gets in
    any more, its jobs stop, and it can be restored until ``now + grace`` (TENANT_DELETE_GRACE_DAYS).
    Its billing is settled by a job once this commits. 409 if it is already closed."""
    now = now or timezone.now()
    deadline = now + (_grace() if grace is None else grace)
    with schema_context(get_public_schema_name()), transaction.atomic():
        locked: Tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        before = locked.status
        tenant_close(tenant=locked, delete_after=deadline, now=now)
        stopped = tenant_jobs_stop(tenant=locked)
        job_defer(BILLING_CLOSE_JOB, tenant_id=locked.pk)
        changes = {"status": [before, locked.status], "delete_after": deadline, "jobs_stopped": stopped}
        if reason:
            changes["reason"] = reason
        # Last: the audit log's per-tenant lock is the last one a transaction takes (tenants.audit).
        audit_record(tenant=locked, action=Action.WORKSPACE_CLOSED, actor=actor, request=request, changes=changes)
    return locked


def workspace_close_by_owner(*, tenant: Tenant, user: User, confirm: str, request: Any = None) -> Tenant:
    """The owner closes their workspace, confirming by typing its subdomain (API and billing page)."""
    membership = Membership.objects.for_tenant(tenant).filter(user=user).first()
    if membership is None or membership.role != Membership.Role.OWNER:
        raise ApplicationError("Only an owner can close this workspace.", code="permission_denied", status=403)
    if confirm.strip().lower() != tenant.subdomain:
        message = f"Type the workspace address ({tenant.subdomain}) to confirm."
        raise ApplicationError(
            message, code="confirmation_mismatch", status=400, extra={"fields": {"confirm": [message]}}
        )
    return workspace_close(tenant=tenant, actor=user, request=request)


def workspace_restore(*, tenant: Tenant, actor: Actor, request: Any = None, now: dt.datetime | None = None) -> Tenant:
    """Open a closed workspace again before its deadline (operators). It comes back active on the
    free plan (its subscription was cancelled when it closed), and the ingestions closing stopped
    are queued again."""
    with schema_context(get_public_schema_name()), transaction.atomic():
        locked: Tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        deadline = locked.delete_after
        tenant_restore(tenant=locked, now=now)
        resumed = _ingestion_resume(tenant=locked)
        changes = {
            "status": [Tenant.Status.CLOSED, locked.status],
            "delete_after": [deadline, None],
            "ingestion_resumed": resumed,
        }
        audit_record(tenant=locked, action=Action.WORKSPACE_RESTORED, actor=actor, request=request, changes=changes)
    return locked


def _ingestion_resume(*, tenant: Tenant) -> int:
    """Queue again the ingestion of the documents whose jobs closing stopped (they wait pending)."""
    with tenant_context(tenant):
        pending = list(Document.objects.filter(status=Document.Status.PENDING))
        for document in pending:
            document_ingest_retry(document=document)
    return len(pending)


def workspace_billing_close(*, tenant_id: int) -> None:
    """Job body: settle a closed tenant's billing (nothing if it was restored or deleted meanwhile).
    Raises ``BillingCloseIncomplete`` to be tried again."""
    tenant = Tenant.objects.filter(pk=tenant_id, status=Tenant.Status.CLOSED).first()
    if tenant is not None:
        tenant_billing_close(tenant=tenant)


def tenant_jobs_stop(*, tenant: Tenant) -> int:
    """Cancel the tenant's waiting jobs and ask its running ones to stop, in the caller's transaction
    (procrastinate tells their workers on commit; a running job stops at its next ``should_stop``).

    A tenant's jobs are those run in its schema and the public ones about it (its mail)."""
    mine = Q(args__schema_name=tenant.schema_name) | Q(args__tenant_id=tenant.pk)
    ids = list(
        ProcrastinateJob.objects.filter(mine, status__in=["todo", "doing"])
        .exclude(task_name=BILLING_CLOSE_JOB)
        .values_list("id", flat=True)
    )
    return sum(app.job_manager.cancel_job_by_id(job_id, abort=True) for job_id in ids)


# --- after the grace period ------------------------------------------------------------------


def workspace_delete(*, tenant: Tenant, now: dt.datetime | None = None) -> bool:
    """Delete a closed tenant whose deadline has passed: settle its billing, then drop its schema and
    free its subdomain. False (tried again by the next run) while billing cannot be settled."""
    try:
        tenant_billing_close(tenant=tenant)
    except BillingCloseIncomplete as exc:
        logger.warning("workspace %s not deleted yet: %s", tenant.subdomain, exc)
        return False
    now = now or timezone.now()
    with schema_context(get_public_schema_name()), transaction.atomic():
        locked = (
            Tenant.objects.select_for_update()
            .filter(pk=tenant.pk, status=Tenant.Status.CLOSED, delete_after__lte=now)
            .first()
        )
        if locked is None:
            return False  # restored meanwhile
        tenant_jobs_stop(tenant=locked)
        # The entry names the tenant that is gone (the log keeps its id and subdomain, no relation).
        gone = Tenant(pk=locked.pk, name=locked.name, subdomain=locked.subdomain, schema_name=locked.schema_name)
        changes = {"name": locked.name, "closed_at": locked.closed_at, "schema_dropped": locked.schema_name}
        tenant_delete(tenant=locked)
        audit_record(tenant=gone, action=Action.WORKSPACE_DELETED, target=gone.schema_name, changes=changes)
    return True


def workspaces_billing_unsettled_close() -> int:
    """Settle the closed workspaces whose billing is still open (Stripe was down for longer than the
    job's retries lasted): a cancelled workspace must not be billed for its grace period."""
    settled = 0
    if not billing_enabled():
        return settled
    for tenant in Tenant.objects.filter(closed_billing_open_q()).distinct():
        try:
            tenant_billing_close(tenant=tenant)
        except BillingCloseIncomplete as exc:
            logger.warning("billing of closed workspace %s not settled yet: %s", tenant.subdomain, exc)
            continue
        settled += 1
    return settled


def closed_billing_open_q() -> Q:
    live = Q(subscription__stripe_subscription_id__gt="") & ~Q(
        subscription__status__in=("canceled", "incomplete_expired")
    )
    return Q(status=Tenant.Status.CLOSED) & (live | Q(usage_events__meter_status="pending"))


def workspaces_delete_due(*, now: dt.datetime | None = None) -> list[str]:
    """Delete every closed workspace past its deadline; the subdomains freed."""
    now = now or timezone.now()
    due = Tenant.objects.filter(status=Tenant.Status.CLOSED, delete_after__lte=now).order_by("delete_after")
    return [tenant.subdomain for tenant in list(due) if workspace_delete(tenant=tenant, now=now)]


def signups_unpaid_release(*, now: dt.datetime | None = None) -> list[str]:
    """Close and delete at once (no grace: nothing was ever used) the signups still unpaid
    BILLING_PENDING_RELEASE_DAYS after they were made, so their subdomains are free again."""
    now = now or timezone.now()
    released = []
    for pk in tenants_unpaid_abandoned(now=now):
        with transaction.atomic():
            # Under lock: a checkout.session.completed may have activated it since the query above.
            tenant = Tenant.objects.select_for_update().filter(pk=pk, status=Tenant.Status.PENDING_PAYMENT).first()
            if tenant is None:
                continue
            tenant = workspace_close(
                tenant=tenant, actor=None, grace=dt.timedelta(0), now=now, reason="unpaid signup released"
            )
        if workspace_delete(tenant=tenant, now=now):
            released.append(tenant.subdomain)
    return released
