"""The database steps of one WebSocket chat turn, each timed where it runs (one process, the test
database): CPU per call and statements, against one plain statement (``SELECT 1`` through Django's
cursor) timed in the same rounds, so the ratios hold on a machine whose speed changes by a fifth
within the hour (bench_chat_baseline's figures do). The steps: the handshake of a member with a
login token, the re-authorisation before a turn, the turn's acceptance (quota, allowance
reservation, prompt, question and placeholder stored) and its settlement (AgentAction, ledger row,
period total, reservation, message). The kNN search is bench_search's.

    .venv/bin/python -m pytest tests/benchmarks/bench_chat_steps.py -o python_files='bench_*.py' -s -q
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ai.chat.services import NO_PROMPT, ChatTurn, _finish, _prepare
from ai.llm import LLMStream, Usage
from ai.models import Message
from billing.models import Plan
from core.models import User
from tenants.sockets import connection_authorised, resolve_connection
from tests.benchmarks.conftest import print_table

pytestmark = [pytest.mark.django_db, pytest.mark.benchmark]

CALLS = 100  # per step and round
ROUNDS = 5
UNIT = "one statement (SELECT 1, its connection warm)"


def _fresh_checkout() -> None:
    """As each database step starts: a connection from the pool, its search_path not known."""
    connection.search_path_set_schemas = None


def _cpu_ms(step: Callable[[], object], calls: int, *, fresh: bool = True) -> float:
    started = time.process_time()
    for _ in range(calls):
        if fresh:
            _fresh_checkout()
        step()
    return (time.process_time() - started) / calls * 1000


def _statements(step: Callable[[], object], *, fresh: bool = True) -> int:
    if fresh:
        _fresh_checkout()
    else:
        step()  # a warm connection: what the step left set stays set
    with CaptureQueriesContext(connection) as captured:
        step()
    return len(captured.captured_queries)


def test_the_database_steps_of_a_chat_turn(acme, fake_anthropic, settings):  # noqa: ANN001
    settings.TENANT_RATE_LIMIT_PER_MINUTE = 0
    settings.CHAT_CONTEXT_CHUNKS = 0  # the kNN search is bench_search's
    settings.CHAT_MAX_STREAMS_PER_USER = CALLS * 10
    # Room for every call's reservation and usage (rolled back with the test's transaction).
    Plan.objects.filter(subscriptions__tenant=acme.tenant).update(included_tokens=10**12, concurrent_requests=1000)
    user = User.objects.get(pk=acme.member.pk)
    scope = {"headers": [(b"host", acme.host.encode()), (b"authorization", f"Token {acme.member_token}".encode())]}
    credential = ("token", acme.member_token)
    stream = LLMStream(model="claude")
    stream.text, stream.usage = "Soup of the day.", Usage(input_tokens=400, output_tokens=30)
    turns: list[ChatTurn] = []

    def round_trip() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def accept() -> None:
        turn = _prepare(tenant=acme.tenant, user=user, message="What is on the menu?", conversation_id=None)
        connection.set_schema_to_public()
        turn.slot.release()
        turns.append(turn)

    def settle() -> None:
        turn = turns.pop(0)
        _finish(turn=turn, prompt=NO_PROMPT, stream=stream, status=Message.Status.OK, error="", started=0.0)
        connection.set_schema_to_public()

    steps: dict[str, Callable[[], object]] = {
        UNIT: round_trip,
        "handshake (member, login token)": lambda: resolve_connection(scope),
        "re-authorisation before a turn": lambda: connection_authorised(
            tenant=acme.tenant, user_id=user.pk, credential=credential
        ),
        "acceptance (_prepare)": accept,
        "settlement (_finish)": settle,
    }
    for step in steps.values():  # warm: SQL cached, the first turn's prompt read
        for _ in range(5):
            step()
    for _ in range(CALLS):  # a round's settlements may come before its acceptances
        accept()
    counts = {name: _statements(step, fresh=name != UNIT) for name, step in steps.items()}

    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(ROUNDS):
        names = list(steps)
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # who goes first moves
            cpu[name].append(_cpu_ms(steps[name], CALLS, fresh=name != UNIT))
    unit = statistics.median(cpu[UNIT])
    rows = [
        [name, counts[name], statistics.median(times), min(times), statistics.median(times) / unit]
        for name, times in cpu.items()
    ]
    turn_names = [name for name in steps if name != UNIT]
    total = sum(statistics.median(cpu[name]) for name in turn_names)
    rows.append(["the turn's steps together", sum(counts[n] for n in turn_names), total, "", total / unit])
    print_table(
        f"CPU per call of a chat turn's database steps, in this process ({ROUNDS} rounds of {CALLS} calls)",
        ["step", "statements", "ms p50 of rounds", "ms best round", "statements' worth"],
        rows,
    )
