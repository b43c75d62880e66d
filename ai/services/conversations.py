"""A member's own conversations: renaming, pinning and deleting them (chat itself is ai.chat.services)."""

from __future__ import annotations

from ai.models import Conversation
from core.platform.exceptions import ApplicationError

CONVERSATION_TITLE_MAX = 200


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())
    if not title:
        raise ApplicationError(
            "A title is required.", code="invalid", status=400, extra={"fields": {"title": ["This field is required."]}}
        )
    conversation.title = title[:CONVERSATION_TITLE_MAX]
    conversation.save(update_fields=["title"])  # renaming does not move it to the top
    return conversation


def conversation_pin(*, conversation: Conversation, pinned: bool) -> Conversation:
    """Pin (first in the person's list) or unpin; like renaming, it does not move the conversation by date."""
    conversation.pinned = pinned
    conversation.save(update_fields=["pinned"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete the conversation and its messages; the AI actions behind them stay for the admins' review."""
    conversation.delete()
