"""Retention of agent actions: expired ones are deleted in batches by a daily job in every tenant,
flagged ones are kept, answers keep their text; autovacuum is tuned for the table in every schema."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.models import AgentAction, Conversation, Message
from ai.services.retention import agent_actions_prune
from core.platform.jobs import app
from tests.ai.factories import AgentActionFactory


def aged(days: int, **fields) -> AgentAction:  # noqa: ANN003
    action = AgentActionFactory(**fields)
    AgentAction.objects.filter(pk=action.pk).update(timestamp=timezone.now() - timedelta(days=days))
    return action


def test_expired_actions_go_in_batches_flagged_and_recent_ones_stay(acme, settings):
    settings.AGENT_ACTION_RETENTION_DAYS = 30
    with tenant_context(acme.tenant):
        expired = [aged(31 + n) for n in range(5)]
        flagged = aged(400, flagged_for_training=True)
        recent = aged(29)
        conversation = Conversation.objects.create(user=acme.member)
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content="Kept", agent_action=expired[0]
        )

        deleted = agent_actions_prune(batch=2)

        remaining = set(AgentAction.objects.values_list("id", flat=True))
        answer.refresh_from_db()
    assert deleted == 5
    assert {flagged.id, recent.id} <= remaining
    assert not remaining & {action.id for action in expired}
    assert (answer.content, answer.agent_action_id) == ("Kept", None)


def test_the_daily_job_prunes_every_tenant(acme, globex, settings, django_capture_on_commit_callbacks):
    settings.AGENT_ACTION_RETENTION_DAYS = 365
    with tenant_context(acme.tenant):
        acme_old = aged(366)
    with tenant_context(globex.tenant):
        globex_old, globex_new = aged(500), aged(10)

    with django_capture_on_commit_callbacks(execute=True):
        app.tasks["ai.agent_actions_prune_all"](timestamp=0)

    with tenant_context(acme.tenant):
        assert not AgentAction.objects.filter(pk=acme_old.pk).exists()
    with tenant_context(globex.tenant):
        assert set(AgentAction.objects.filter(pk__in=[globex_old.pk, globex_new.pk]).values_list("id", flat=True)) == {
            globex_new.pk
        }


def test_autovacuum_is_tuned_for_the_table_in_new_tenants_too(acme):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = 'ai_agentaction'",
            [acme.tenant.schema_name],
        )
        (options,) = cursor.fetchone()

    assert "autovacuum_vacuum_scale_factor=0.01" in options
    assert "autovacuum_analyze_scale_factor=0.02" in options
