"""Retention of agent actions: older than AGENT_ACTION_RETENTION_DAYS they go (flagged ones stay),
deleted in batches, each its own short transaction, then the table is vacuumed."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ai.models import AgentAction, Message

PRUNE_JOB = "ai.agent_actions_prune"
BATCH = 5_000


def agent_actions_prune(*, days: int | None = None, batch: int = BATCH) -> int:
    """Delete this schema's expired, unflagged actions ``batch`` at a time; returns how many.

    Short batches keep locks and WAL bursts small while the AI services keep writing; the answers
    that pointed at a deleted action keep their text (``Message.agent_action`` becomes null). A
    vacuum afterwards (outside a transaction only) returns the space and keeps the index scans of
    the admin's list from wading through dead rows."""
    keep_days = settings.AGENT_ACTION_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=keep_days)
    expired = AgentAction.objects.filter(timestamp__lt=cutoff, flagged_for_training=False)
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(expired.order_by("timestamp").values_list("id", flat=True)[:batch])
            if not ids:
                break
            # Plain DELETE: Django's cascade would first load every row (kilobytes of text each).
            Message.objects.filter(agent_action_id__in=ids).update(agent_action=None)
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM ai_agentaction WHERE id = ANY(%s)", [ids])
                deleted += cursor.rowcount
    if deleted and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) ai_agentaction")
    return deleted
