"""The INSERT and UPDATE built once (core.platform.sql_names.Inserted, Updated) write the rows the
ORM writes, and go through the ORM where it must (save signals, a value that is an expression)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Value, signals
from django.db.models.functions import Upper
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.models import AgentAction, Conversation, Message
from billing.models import UsageEvent
from core.platform.sql_names import Inserted, Updated

pytestmark = pytest.mark.django_db

ACTION = {
    "agent_type": AgentAction.AgentType.CHAT,
    "provider": "anthropic",
    "model": "claude-test",
    "input_prompt": "What is on the menu?",
    "output_text": "Soup of the day.",
    "status": AgentAction.Status.OK,
    "latency_ms": 42,
    "input_tokens": 400,
    "output_tokens": 30,
}
# What differs between two rows written a moment apart, however they are written.
PER_ROW = {"id", "timestamp", "created"}


def _columns(model, pk):  # noqa: ANN001
    row = model.objects.filter(pk=pk).values().get()
    return {name: value for name, value in row.items() if name not in PER_ROW}


def test_an_inserted_action_is_the_row_and_instance_the_orm_makes(acme):  # noqa: ANN001
    with tenant_context(acme.tenant):
        written = Inserted(AgentAction).create(user=acme.member, **ACTION)
        by_orm = AgentAction.objects.create(user=acme.member, **ACTION)

        assert written.pk is not None and written.pk != by_orm.pk
        assert not written._state.adding and written._state.db == by_orm._state.db
        assert abs(written.timestamp - timezone.now()) < dt.timedelta(seconds=5)  # auto_now_add
        assert _columns(AgentAction, written.pk) == _columns(AgentAction, by_orm.pk)
        assert AgentAction.objects.get(pk=written.pk).search  # the generated column, by the database
        written.refresh_from_db()
        assert (written.output_text, written.user_id, written.reviewer_note) == ("Soup of the day.", acme.member.pk, "")


def test_an_inserted_usage_event_lands_in_the_public_ledger_from_a_tenant_schema(acme):  # noqa: ANN001
    fields = {"tenant_id": acme.tenant.pk, "feature": "chat", "model": "claude-test", "total_tokens": 5}
    with tenant_context(acme.tenant):
        written = Inserted(UsageEvent).create(request_key="written", **fields)
        by_orm = UsageEvent.objects.create(request_key="by-orm", **fields)
    assert _columns(UsageEvent, written.pk) == {**_columns(UsageEvent, by_orm.pk), "request_key": "written"}


def test_a_model_with_save_receivers_is_created_through_the_orm(acme):  # noqa: ANN001
    seen = []

    def receiver(sender, instance, created, **kwargs):  # noqa: ANN001, ANN003
        seen.append((instance.pk, created))

    signals.post_save.connect(receiver, sender=AgentAction)
    try:
        with tenant_context(acme.tenant):
            written = Inserted(AgentAction).create(user=acme.member, **ACTION)
    finally:
        signals.post_save.disconnect(receiver, sender=AgentAction)
    assert seen == [(written.pk, True)]


def test_a_value_that_is_an_expression_is_written_by_the_orm(acme):  # noqa: ANN001
    with tenant_context(acme.tenant):
        written = Inserted(AgentAction).create(user=acme.member, **{**ACTION, "output_text": Upper(Value("shout"))})
        assert AgentAction.objects.get(pk=written.pk).output_text == "SHOUT"


def _an_action_and_two_answers(world):  # noqa: ANN001, ANN202
    """In ``world``'s schema (the caller's tenant_context): an AgentAction and two empty answers."""
    conversation = Conversation.objects.create(user=world.member)
    action = AgentAction.objects.create(user=world.member, **ACTION)
    answers = [Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT) for _ in range(2)]
    return action, *answers


def test_an_update_by_primary_key_writes_what_the_orms_update_writes(acme):  # noqa: ANN001
    with tenant_context(acme.tenant):
        action, first, second = _an_action_and_two_answers(acme)
        sources = [{"document_id": 7, "title": "Menu", "chunks": [{"index": 0, "snippet": "Soup"}]}]
        settled = Updated(Message, ["content", "status", "sources", "output_tokens", "agent_action_id"])

        assert settled.run(first.pk, ["Soup.", Message.Status.OK, sources, 30, action.pk]) == 1
        Message.objects.filter(pk=second.pk).update(
            content="Soup.", status=Message.Status.OK, sources=sources, output_tokens=30, agent_action=action
        )
        assert _columns(Message, first.pk) == _columns(Message, second.pk)
        assert Message.objects.get(pk=first.pk).sources == sources
        assert settled.run(0, ["", Message.Status.OK, [], 0, None]) == 0


def test_an_update_that_needs_a_column_still_null_leaves_a_row_where_it_is_set(acme):  # noqa: ANN001
    with tenant_context(acme.tenant):
        action, open_, settled = _an_action_and_two_answers(acme)
        Message.objects.filter(pk=settled.pk).update(content="Settled.", agent_action=action)
        checkpoint = Updated(Message, ["content"], still_null=["agent_action_id"])

        assert [checkpoint.run(message.pk, ["So far"]) for message in (open_, settled)] == [1, 0]
        assert [Message.objects.get(pk=m.pk).content for m in (open_, settled)] == ["So far", "Settled."]


def test_a_call_in_flight_on_a_plan_without_a_hard_allowance_is_recorded_as_the_orm_records_it(acme):  # noqa: ANN001
    """The reservation row of an unlimited plan's turn (built once, before every such turn): the row
    the ORM writes, in the public ledger, holding nothing."""
    from billing.models import AllowanceReservation
    from billing.services.quota import Allowance
    from billing.services.reservations import allowance_reserve

    allowance = Allowance(remaining=None, included=1000, concurrent_requests=8)
    with tenant_context(acme.tenant):
        reservation = allowance_reserve(
            tenant=acme.tenant,
            allowance=allowance,
            feature="chat",
            model="claude-test",
            prompt_tokens=300,
            max_tokens=1024,
            user_id=acme.member.pk,
            api_key_id=None,
        )
        written = AllowanceReservation.objects.get(pk=reservation.id)
        by_orm = AllowanceReservation.objects.create(
            tenant_id=acme.tenant.pk,
            period_start=written.period_start,
            tokens=0,
            feature="chat",
            model="claude-test",
            user_id=acme.member.pk,
            api_key_id=None,
            expires_at=written.expires_at,
        )
    assert reservation.tokens is None
    assert _columns(AllowanceReservation, written.pk) == _columns(AllowanceReservation, by_orm.pk)
    assert abs(written.created - timezone.now()) < dt.timedelta(seconds=5)
    assert written.expires_at > written.created
