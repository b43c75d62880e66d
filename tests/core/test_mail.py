"""E-mail: configured by EMAIL_URL, written as one .eml file per message by default, sent by jobs."""

import email
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives, get_connection
from django.utils import timezone
from procrastinate.jobs import Job

from core.platform.jobs import TransientJobError, app
from core.platform.mail import mail_defer
from tenants.services.invitations import invitation_create

ROOT = Path(__file__).resolve().parents[2]


def mail_settings(**env):
    """The e-mail settings a fresh process computes from ``env`` (settings are read at start-up)."""
    names = ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_USE_TLS", "EMAIL_HOST_USER", "EMAIL_FILE_PATH")
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        f" print(json.dumps({{k: getattr(settings, k, None) for k in {names!r}}}))"
    )
    clean = {k: v for k, v in os.environ.items() if k != "EMAIL_URL"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, {"EMAIL_BACKEND": "core.platform.mail.EmlFileBackend"}),
        (
            {"EMAIL_URL": "smtp+tls://mailer:s3cret@smtp.example.com:587"},
            {
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "smtp.example.com",
                "EMAIL_PORT": 587,
                "EMAIL_USE_TLS": True,
                "EMAIL_HOST_USER": "mailer",
            },
        ),
        ({"EMAIL_URL": "consolemail://"}, {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}),
        ({"EMAIL_URL": "console"}, {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}),
    ],
)
def test_email_url_picks_the_backend(env, expected, tmp_path):
    found = mail_settings(STRATA_DATA_DIR=str(tmp_path), **env)

    assert {key: found[key] for key in expected} == expected
    if not env:
        assert found["EMAIL_FILE_PATH"] == str(tmp_path / "mail")


def test_the_file_backend_writes_one_eml_file_per_message(tmp_path):
    connection = get_connection("core.platform.mail.EmlFileBackend", file_path=str(tmp_path / "mail"))
    messages = []
    for n in range(3):
        message = EmailMultiAlternatives(f"Hello {n}", f"Plain {n}", to=[f"p{n}@example.com"], connection=connection)
        message.attach_alternative(f"<p>Rich {n}</p>", "text/html")
        messages.append(message)

    assert connection.send_messages(messages) == 3

    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml"] * 3
    parsed = [email.message_from_bytes(f.read_bytes()) for f in files]
    assert sorted(p["Subject"] for p in parsed) == ["Hello 0", "Hello 1", "Hello 2"]
    parts = [part.get_content_type() for part in parsed[0].walk()]
    assert "text/plain" in parts and "text/html" in parts


# A message bigger than the files this process may write: the write fails half-way, as on a full disk.
WRITE_FAILS = """
import resource, signal, sys, django
django.setup()
from django.core.mail import EmailMessage, get_connection
connection = get_connection("core.platform.mail.EmlFileBackend", file_path=sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    EmailMessage("Big", "x" * 100_000, to=["big@example.com"], connection=connection).send()
except OSError as exc:
    print("write failed:", exc.strerror)
"""


def test_a_message_whose_write_fails_leaves_no_part_file_behind(tmp_path):
    folder = tmp_path / "mail"
    result = subprocess.run(
        [sys.executable, "-c", WRITE_FAILS, str(folder)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "STRATA_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )

    assert "write failed" in result.stdout, result.stderr
    assert list(folder.iterdir()) == []


MAIL_TASKS = sorted(name for name, task in app.tasks.items() if task.queue == "mail")


@pytest.mark.parametrize("name", MAIL_TASKS)
def test_mail_jobs_retry_after_10_20_40_s_doubling_up_to_an_hour_then_give_up(name):
    strategy = app.tasks[name].retry_strategy

    def wait(attempts):
        job = Job(id=1, queue="mail", lock=None, queueing_lock=None, task_name=name, attempts=attempts)
        decision = strategy.get_retry_decision(exception=TransientJobError("server down"), job=job)
        return None if decision is None else round((decision.retry_at - timezone.now()).total_seconds())

    assert [wait(attempts) for attempts in range(11)] == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, None]
    job = Job(id=1, queue="mail", lock=None, queueing_lock=None, task_name=name, attempts=0)
    assert strategy.get_retry_decision(exception=ValueError("a bug"), job=job) is None  # bugs are not retried


def test_mail_waits_for_the_transaction_and_goes_out_from_a_job(acme, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        invitation_create(tenant=acme.tenant, actor=acme.owner, email="later@example.com", role="member")
        mail_defer(
            to="note@example.com", template="tenants/email/password_changed", context={"email": "x", "site_url": "/"}
        )
        assert mail.outbox == []  # nothing is sent inside the request's transaction

    for callback in callbacks:
        callback()
    assert sorted(m.to[0] for m in mail.outbox) == ["later@example.com", "note@example.com"]


def test_in_queue_mode_the_request_only_queues_a_job(acme, settings):
    from procrastinate.contrib.django.models import ProcrastinateJob

    settings.TASK_MODE = "queue"
    invitation_create(tenant=acme.tenant, actor=acme.owner, email="queued@example.com", role="member")

    job = ProcrastinateJob.objects.filter(task_name="tenants.invitation_send").latest("id")
    assert job.args == {"invitation_id": acme.tenant.invitations.get(email="queued@example.com").id}
    assert "queued@example.com" not in json.dumps(job.args)  # no address, no link in the queue
    assert mail.outbox == []
