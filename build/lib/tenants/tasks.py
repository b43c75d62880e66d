"""The tenants app's jobs: keep warm spare schemas ready for the next signups; send the account
e-mails (each makes its link's secret itself, so no secret waits in the queue)."""

from __future__ import annotations

from django.conf import settings

from core.platform.jobs import app, public_task
from core.platform.mail import MAIL_RETRY
from tenants.services import accounts, invitations
from tenants.services.provisioning import SPARES_REFILL_JOB, spares_refill


@public_task(name=SPARES_REFILL_JOB, queue="provisioning", queueing_lock=SPARES_REFILL_JOB)
def spares_refill_job() -> None:
    spares_refill()


@app.periodic(cron=settings.TENANT_SPARES_CHECK_CRON)
@public_task(name="tenants.spares_check", queue="provisioning", queueing_lock="tenants.spares_check")
def spares_check(timestamp: int) -> None:
    """Refill spares a crashed or failed refill left short."""
    spares_refill()


@public_task(name=invitations.INVITATION_SEND_JOB, queue="mail", retry=MAIL_RETRY)
def invitation_send(*, invitation_id: int) -> None:
    invitations.invitation_send(invitation_id=invitation_id)


@public_task(name=accounts.PASSWORD_RESET_JOB, queue="mail", retry=MAIL_RETRY)
def password_reset_send(*, email: str, tenant_id: int | None) -> None:
    accounts.password_reset_send(email=email, tenant_id=tenant_id)


@public_task(name=accounts.WORKSPACES_FIND_JOB, queue="mail", retry=MAIL_RETRY)
def workspaces_find_send(*, email: str) -> None:
    accounts.workspaces_find_send(email=email)


@public_task(name=accounts.EMAIL_CHANGE_JOB, queue="mail", retry=MAIL_RETRY)
def email_change_send(*, user_id: int, new_email: str, tenant_id: int) -> None:
    accounts.email_change_send(user_id=user_id, new_email=new_email, tenant_id=tenant_id)
