"""Chaos: faults injected into real processes (a web server, a job worker) and fakes (the Anthropic
and Stripe APIs), then four books that must agree: the ledger and Stripe's meter totals, what the
upstream charged and the ledger, the documents accepted and the documents ready, the mails queued
and the mails delivered.

The faults: upstream streams broken three ways (a malformed event, a stream cut without
message_stop, an overloaded error mid-stream), the web process killed with SIGKILL mid-answer and
started again, the worker stopped with SIGTERM mid-ingestion and killed with SIGKILL after mail was
queued (each started again), and Stripe dropping meter events before and after it recorded them.
"""

from __future__ import annotations

import datetime as dt
import email
import random
import threading
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.test import override_settings
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.models import AgentAction, Document
from billing.models import AllowanceReservation, Subscription, UsageEvent
from billing.services import usage_sync
from billing.services.reservations import reservations_expire
from tests.ai.factories import world_create
from tests.fakes.stripe import DROP, DROP_AFTER_COMMIT, FakeStripe
from tests.processes import (
    SPAWNED_APPLICATION_NAME,
    ServedProcess,
    committed,
    database_backends_end,
    live_database_url,
    manage_py_process,
    process_stop,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

STRIPE_KEY = "sk_test_strata_chaos"
CUSTOMER = "cus_chaos"
CHECKPOINT_SECONDS = 1.0
TOKEN_DELAY = 0.02
# Four characters a piece, and the fake charges a token a piece: the client's estimate of an output
# the upstream never reported (four characters a token) is then the fake's own count.
REPLY_PIECE = "tok "
INVITEES = [f"invitee{i}@chaos.test" for i in range(4)]


def _tenant():  # noqa: ANN202
    world = world_create("Chaos")
    Subscription.objects.filter(tenant=world.tenant).update(stripe_customer_id=f"{CUSTOMER}_{world.tenant.pk}")
    return world


def _chat(url: str, world, question: str) -> tuple[int, list[str]]:  # noqa: ANN001
    headers = {
        "Host": f"{world.tenant.subdomain}.localhost",
        "Authorization": f"Token {world.member_token}",
        "Accept": "text/event-stream",
    }
    events: list[str] = []
    with httpx.stream("POST", f"{url}/api/chat/", json={"message": question}, headers=headers, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
        return response.status_code, events


def _api(world, token: str) -> dict[str, str]:  # noqa: ANN001
    return {"Host": f"{world.tenant.subdomain}.localhost", "Authorization": f"Token {token}"}


class Worker:
    """``manage.py worker`` that the test stops, kills and starts again."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process = manage_py_process("worker", env=env, log=log)

    def restart(self, signum: int) -> None:
        self.process.send_signal(signum)
        self.process.wait(60)
        self.process = manage_py_process("worker", env=self.env, log=self.log)

    def stop(self) -> None:
        process_stop(self.process)


def test_after_injected_faults_the_ledger_stripe_upstream_documents_and_mail_all_agree(
    django_db_setup, django_db_blocker, anthropic_server, tmp_path
):
    stripe = FakeStripe(api_key=STRIPE_KEY).start()
    anthropic_server.reset()
    with django_db_blocker.unblock():
        world = committed(_tenant)
    env = {
        "DATABASE_URL": live_database_url(),
        "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
        "ANTHROPIC_API_KEY": "sk-ant-chaos",
        "ANTHROPIC_BASE_URL": anthropic_server.base_url,
        "ANTHROPIC_MAX_RETRIES": "0",
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": stripe.base_url,
        "STRATA_DATA_DIR": str(tmp_path / "data"),
        "EMBEDDING_CACHE_DIR": str(settings.EMBEDDING_CACHE_DIR),
        "CHAT_CONTEXT_CHUNKS": "0",
        "CHAT_CHECKPOINT_SECONDS": str(CHECKPOINT_SECONDS),
        "TASK_MODE": "queue",
        "JOBS_SHUTDOWN_GRACE_SECONDS": "5",
    }
    web = ServedProcess(env=env, log=tmp_path / "web.log")
    worker = Worker(env, tmp_path / "worker.log")
    accepted: list[int] = []
    try:
        with django_db_blocker.unblock():
            web.wait_ready()

        # 1. Answers: clean ones and three kinds of broken upstream stream.
        faults = [
            {},
            {"malformed_event_after": 5},
            {"cut_stream_after": 5},
            {"error_mid_stream_after": 5, "error_mid_stream_type": "overloaded_error"},
            {},
        ]
        requests = []  # what the upstream was asked (and charged), kept across the fake's resets
        for number, fault in enumerate(faults):
            requests += anthropic_server.requests
            anthropic_server.reset()
            anthropic_server.reply = REPLY_PIECE * 40
            for name, value in fault.items():
                setattr(anthropic_server, name, value)
            status, events = _chat(web.url, world, f"chaos question {number}")
            assert status == 200 and events[-1] in ("done", "error"), (fault, events[-3:])
        requests += anthropic_server.requests
        anthropic_server.reset()

        # 2. The web process killed mid-answer (SIGKILL), then started again.
        anthropic_server.reply = REPLY_PIECE * 2_000
        anthropic_server.token_delay = TOKEN_DELAY
        streaming = threading.Thread(target=lambda: _swallow(_chat, web.url, world, "chaos question killed"))
        streaming.start()
        wait_until(lambda: anthropic_server.active_streams >= 1, timeout=30, what="the answer streams")
        with django_db_blocker.unblock():
            wait_until(lambda: committed(_checkpointed, world), timeout=30, what="the answer's first checkpoint")
        web.process.kill()
        streaming.join(30)
        anthropic_server.token_delay = 0
        web = ServedProcess(env=env, log=tmp_path / "web2.log")
        with django_db_blocker.unblock():
            web.wait_ready()

        # 3. Uploads, with the worker stopped (SIGTERM) while it ingests them, then started again.
        # Each about 25 KB (a second or more of one worker's embedding): a SIGTERM right after the
        # first is seen running lands mid-ingestion.
        for number in range(4):
            response = httpx.post(
                f"{web.url}/api/documents/",
                json={"title": f"Chaos {number}", "content": f"Paragraph {number} about resilience. " * 800},
                headers=_api(world, world.owner_token),
                timeout=30,
            )
            assert response.status_code == 201, response.text
            accepted.append(response.json()["id"])
        with django_db_blocker.unblock():
            wait_until(lambda: committed(_ingesting, world), timeout=60, what="the worker ingesting")
        worker.restart(15)  # SIGTERM

        # 4. Invitations (mail), with the worker killed (SIGKILL) right after they are queued.
        for invitee in INVITEES:
            response = httpx.post(
                f"{web.url}/api/invitations/",
                json={"email": invitee, "role": "member"},
                headers=_api(world, world.owner_token),
                timeout=30,
            )
            assert response.status_code == 201, response.text
        worker.restart(9)  # SIGKILL

        with django_db_blocker.unblock():
            # Documents accepted = documents ready.
            wait_until(lambda: committed(_ready_count, world, accepted) == len(accepted), timeout=240, what="ready")
            # Mails queued = mails delivered (once each).
            wait_until(lambda: _delivered(tmp_path / "data" / "mail") >= set(INVITEES), timeout=180, what="mail")
            assert sorted(_delivered_list(tmp_path / "data" / "mail")) == sorted(INVITEES)

            # Reservations left by the killed answer are billed once taken for dead.
            committed(_expire_reservations)
            # The ledger to Stripe, through dropped requests (before and after Stripe recorded them),
            # by the syncs below alone: the worker's periodic one (every minute) would take the drops
            # meant for them, and hold the sync's lock through a dropped request's timeout.
            worker.stop()
            committed(_sync_through_drops, stripe)

            ledger = committed(_ledger, world)
            assert stripe.meter_totals().get(f"{CUSTOMER}_{world.tenant.pk}", 0) == ledger["total"]
            requests += anthropic_server.requests
            _assert_upstream_charges_are_billed(requests, committed(_billed_by_question, world), ledger)
    finally:
        web.stop()
        worker.stop()
        stripe.stop()
        anthropic_server.reset()
        with django_db_blocker.unblock():
            database_backends_end(spawned_only=True)


def _swallow(function, *args) -> None:  # noqa: ANN001
    try:
        function(*args)
    except httpx.HTTPError:
        pass  # the server was killed under it


def _checkpointed(world) -> bool:  # noqa: ANN001
    return AllowanceReservation.objects.filter(tenant=world.tenant, spent_output_tokens__gt=0).exists()


def _ingesting(world) -> bool:  # noqa: ANN001
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM procrastinate_jobs WHERE status = 'doing' AND args->>'schema_name' = %s",
            [world.tenant.schema_name],
        )
        return cursor.fetchone() is not None


def _ready_count(world, ids: list[int]) -> int:  # noqa: ANN001
    with tenant_context(world.tenant):
        return Document.objects.filter(id__in=ids, status=Document.Status.READY, chunk_count__gt=0).count()


def _delivered_list(folder: Path) -> list[str]:
    recipients = []
    for path in folder.glob("*.eml") if folder.exists() else []:
        message = email.message_from_bytes(path.read_bytes())
        if "invit" in (message["Subject"] or "").lower():
            recipients.append(message["To"])
    return recipients


def _delivered(folder: Path) -> set[str]:
    return set(_delivered_list(folder))


def _expire_reservations() -> None:
    AllowanceReservation.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    reservations_expire()


def _sync_through_drops(stripe: FakeStripe) -> None:
    rng = random.Random(19)
    with override_settings(STRIPE_SECRET_KEY=STRIPE_KEY, STRIPE_API_BASE=stripe.base_url, STRIPE_MAX_NETWORK_RETRIES=0):
        clock = timezone.now()
        for _ in range(200):
            if not UsageEvent.objects.filter(meter_status=UsageEvent.MeterStatus.PENDING).exists():
                return
            stripe.fail_next = [rng.choice([DROP, DROP_AFTER_COMMIT, 500])] if rng.random() < 0.5 else []
            usage_sync(now=clock, limit=2)
            stripe.fail_next = []
            clock += dt.timedelta(hours=1)  # past any backoff
    raise AssertionError("usage never all reached Stripe")


def _ledger(world) -> dict[str, int]:  # noqa: ANN001
    rows = UsageEvent.objects.filter(tenant=world.tenant)
    return {"total": rows.aggregate(total=Sum("total_tokens"))["total"] or 0}


def _billed_by_question(world) -> dict[str, tuple[int, int, str]]:  # noqa: ANN001
    """(input, output, status) billed per chat question, the killed answer's from its reservation."""
    billed: dict[str, tuple[int, int, str]] = {}
    events = {event.request_key: event for event in UsageEvent.objects.filter(tenant=world.tenant)}
    with tenant_context(world.tenant):
        for action in AgentAction.objects.filter(agent_type=AgentAction.AgentType.CHAT):
            event = events.get(f"action:{action.pk}")
            question = action.input_prompt.rsplit("\n", 1)[-1]
            if event is not None:
                billed[question] = (event.input_tokens, event.output_tokens, action.status)
    for key, event in events.items():
        if key.startswith("reservation:"):
            billed["chaos question killed"] = (event.input_tokens, event.output_tokens, "killed")
    return billed


def _assert_upstream_charges_are_billed(requests, billed, ledger) -> None:  # noqa: ANN001
    charged = {}
    for request in requests:
        question = request["messages"][-1]["content"].rsplit("\n", 1)[-1]
        charged[question] = request.charged
    assert set(charged) == set(billed), (sorted(charged), sorted(billed))
    for question, (input_tokens, output_tokens, status) in billed.items():
        upstream = charged[question]
        assert input_tokens == upstream["input_tokens"], question
        if status == "ok":
            assert output_tokens == upstream["output_tokens"], question  # what the upstream said
        elif status == "killed":
            # Lost: at most what streamed since the last checkpoint (and the time to write it).
            lost = upstream["output_tokens"] - output_tokens
            assert 0 <= lost <= (CHECKPOINT_SECONDS + 1) / TOKEN_DELAY, (question, lost)
        else:
            # A broken stream never says its output: counted from the text, never less than delivered.
            assert output_tokens >= upstream["output_tokens"], (question, output_tokens, upstream)
    assert ledger["total"] >= sum(c["input_tokens"] for c in charged.values())
