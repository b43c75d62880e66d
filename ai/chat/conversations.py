"""A person's own conversations as their list shows them: pinned first, then the latest, optionally
narrowed to those whose title or messages contain the words searched for."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from ai.models import Conversation, Message
from ai.selectors import conversations_for

SEARCH_MAX_CHARS = 200


def conversations_listed(*, user_id: int, query: str = "") -> QuerySet[Conversation]:
    """``user_id``'s conversations in the current tenant's schema, pinned first, then by last turn;
    with ``query``, only those whose title or any message contains it (case-insensitive)."""
    conversations = conversations_for(user_id=user_id)
    query = " ".join(query.split())[:SEARCH_MAX_CHARS]
    if query:
        said = Message.objects.filter(conversation=OuterRef("pk"), superseded=False, content__icontains=query)
        conversations = conversations.filter(Q(title__icontains=query) | Exists(said))
    return conversations.order_by("-pinned", "-updated", "-id")
