"""Feedback from the person who asked: thumbs up or down, and a comment, on one answer; it lands on the
answer's AgentAction, where reviewers find it (the admin's "thumbs down, not reviewed" queue)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ai.models import AgentAction, Conversation, Message
from core.models import User
from core.platform.exceptions import ApplicationError

COMMENT_MAX = 2000


@transaction.atomic
def message_feedback_give(
    *, conversation: Conversation, message_id: int, user: User, rating: str, comment: str = ""
) -> AgentAction:
    """Record ``user``'s rating (``up`` or ``down``) of an answer in their own ``conversation``; a
    second rating replaces the first. 404 for no such answer there, 409 while it is unfinished."""
    message = (
        Message.objects.filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT)
        .only("id", "agent_action_id")
        .first()
    )
    if message is None:
        raise ApplicationError("No such answer in this conversation.", code="not_found", status=404)
    if message.agent_action_id is None:
        raise ApplicationError("This answer is not finished yet.", code="not_finished", status=409)
    action = AgentAction.objects.select_for_update().only("id").get(pk=message.agent_action_id)
    action.feedback = rating
    action.feedback_comment = comment.strip()[:COMMENT_MAX]
    action.feedback_by = user
    action.feedback_at = timezone.now()
    action.save(update_fields=["feedback", "feedback_comment", "feedback_by", "feedback_at"])
    return action
