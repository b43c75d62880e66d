"""Outgoing e-mail: messages rendered from a text and an HTML template, sent by a job (never inside
a request), and written as one .eml file per message when no mail server is configured.

Jobs that carry a secret (an invitation or reset link) make the secret inside the job and call
``mail_send`` there, so no link ever sits in the job queue; messages with nothing secret in them
are deferred with ``mail_defer``, which queues the generic ``core.mail_send`` job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends import filebased
from django.template.loader import render_to_string
from django.utils import timezone
from procrastinate import BaseRetryStrategy, RetryDecision
from procrastinate.jobs import Job

from core.platform.admission import connections_release
from core.platform.counters import window_count
from core.platform.jobs import TransientJobError, job_defer, public_task

logger = logging.getLogger(__name__)

MAIL_JOB = "core.mail_send"


class DoublingRetry(BaseRetryStrategy):
    """Retry a ``TransientJobError`` after ``first_wait`` seconds, doubling each time up to
    ``max_wait``, at most ``max_attempts`` times. (procrastinate's ``exponential_wait=n`` waits
    n, n², n³...: 10 would mean waits of a day and more.)"""

    def __init__(self, *, first_wait: int, max_wait: int, max_attempts: int) -> None:
        self.first_wait, self.max_wait, self.max_attempts = first_wait, max_wait, max_attempts

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        if job.attempts >= self.max_attempts or not isinstance(exception, TransientJobError):
            return None
        return RetryDecision(retry_in={"seconds": min(self.first_wait * 2**job.attempts, self.max_wait)})


# A mail server that is down or refuses for a while: retried after 10, 20, 40, 80 s..., then an hour
# apart, 10 times (about 2.5 hours in all) before giving up.
MAIL_RETRY = DoublingRetry(first_wait=10, max_wait=3600, max_attempts=10)


class EmlFileBackend(filebased.EmailBackend):
    """Django's file backend, one ``.eml`` file per message (readable by any mail client).

    Each file is written under a temporary name and renamed into place, so a reader polling the
    folder never sees half a message; a write that fails (a full disk) removes it.
    """

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = 0
        for message in email_messages:
            stamp = timezone.now().strftime("%Y%m%d-%H%M%S-%f")
            path = Path(self.file_path) / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
            part = tempfile.NamedTemporaryFile("wb", dir=self.file_path, suffix=".part", delete=False)
            try:
                with part:
                    part.write(message.message().as_bytes())
                os.replace(part.name, path)
            except BaseException:
                Path(part.name).unlink(missing_ok=True)
                raise
            sent += 1
        return sent


def mail_render(*, template: str, context: dict[str, Any]) -> tuple[str, str, str]:
    """Subject, plain text and HTML of ``<template>_subject.txt``, ``<template>.txt``, ``<template>.html``."""
    subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
    return subject, render_to_string(f"{template}.txt", context), render_to_string(f"{template}.html", context)


def mail_send(*, to: str, template: str, context: dict[str, Any]) -> None:
    """Render and send one message now (call it from a job). A mail server that fails is a
    ``TransientJobError``, so the job is retried."""
    subject, text, html = mail_render(template=template, context=context)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    message.attach_alternative(html, "text/html")
    connections_release()  # a mail server may take seconds: no pooled connection waits on it
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientJobError(f"mail to the server failed: {exc}") from exc


def mail_recipient_allowed(*, to: str, kind: str) -> bool:
    """Whether one more message of ``kind`` may go to ``to`` this hour (MAIL_PER_RECIPIENT_PER_HOUR).

    Requests that mail someone answer the same whatever happens here, so an address cannot be
    flooded through them and the cap itself reveals nothing.
    """
    limit = settings.MAIL_PER_RECIPIENT_PER_HOUR
    if not limit:
        return True
    # Counted under a digest of the address: the cache (Redis) keeps no one's address in its keys.
    address = hashlib.sha256(to.lower().encode()).hexdigest()
    count = window_count(f"strata:mail:{kind}:{address}", window_seconds=3600, now=timezone.now().timestamp())
    if count > limit:
        logger.warning("not sending more %s mail to an address this hour (limit %s)", kind, limit)
        return False
    return True


def mail_defer(*, to: str, template: str, context: dict[str, Any]) -> None:
    """Queue a message with nothing secret in it, in the caller's transaction. ``context`` must be JSON."""
    job_defer(MAIL_JOB, to=to, template=template, context=context)


@public_task(name=MAIL_JOB, queue="mail", retry=MAIL_RETRY)
def mail_send_job(*, to: str, template: str, context: dict[str, Any]) -> None:
    mail_send(to=to, template=template, context=context)
