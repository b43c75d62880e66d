"""One person's data in the current tenant schema: what they may download, and what goes when their
account is deleted (config.personal_data runs these in every schema).

Which rows are a person's is found from the models themselves (every reference to the user model
in the ai app), so a table added later is covered without being named here: its nullable
references are cleared, other rows that name the person are deleted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.db import connection, models

from ai.models import AgentAction, Conversation, Document, Message


def _user_references() -> Iterator[tuple[type[models.Model], models.ForeignKey[Any, Any]]]:
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    for model in apps.get_app_config("ai").get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            if isinstance(field, models.ForeignKey) and field.related_model is user_model:
                yield model, field


# Schemas asked about per statement: one EXISTS probe of an index per reference and schema.
_SCHEMAS_PER_QUERY = 200


def schemas_with_person(*, user_id: int, schema_names: Sequence[str]) -> set[str]:
    """The schemas among ``schema_names`` where some row names the person, asked a few hundred
    schemas per statement (visiting each schema costs ten statements; most have nothing)."""
    quote = connection.ops.quote_name
    checks = [(model._meta.db_table, field.column) for model, field in _user_references()]
    checks.append((LogEntry._meta.db_table, LogEntry._meta.get_field("user").column))
    found: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(schema_names), _SCHEMAS_PER_QUERY):
            parts: list[str] = []
            params: list[str | int] = []
            for name in schema_names[start : start + _SCHEMAS_PER_QUERY]:
                probes = " OR ".join(
                    f"EXISTS (SELECT 1 FROM {quote(name)}.{quote(table)} WHERE {quote(str(column))} = %s)"
                    for table, column in checks
                )
                parts.append(f"SELECT %s WHERE {probes}")
                params += [name, *([user_id] * len(checks))]
            if parts:
                cursor.execute(" UNION ALL ".join(parts), params)
                found.update(row[0] for row in cursor.fetchall())
    return found


def person_data_export(*, user_id: int) -> dict[str, list[dict[str, Any]]]:
    """The person's conversations with their messages, and the documents they added (with text)."""
    messages_by_conversation: dict[int, list[dict[str, Any]]] = {}
    for message in Message.objects.filter(conversation__user_id=user_id).order_by("conversation_id", "created", "id"):
        messages_by_conversation.setdefault(message.conversation_id, []).append(
            {
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "sources": message.sources,
                "input_tokens": message.input_tokens,
                "output_tokens": message.output_tokens,
                "superseded": message.superseded,  # replaced by a regenerated or edited turn
                "created": message.created,
            }
        )
    conversations = [
        {
            "id": conversation.id,
            "title": conversation.title,
            "pinned": conversation.pinned,
            "created": conversation.created,
            "updated": conversation.updated,
            "messages": messages_by_conversation.get(conversation.id, []),
        }
        for conversation in Conversation.objects.filter(user_id=user_id).order_by("created", "id")
    ]
    documents = [
        {
            "id": document.id,
            "title": document.title,
            "source_name": document.source_name,
            "content_type": document.content_type,
            "status": document.status,
            "created": document.created,
            "updated": document.updated,
            "content": document.content,
        }
        for document in Document.objects.filter(created_by_id=user_id).order_by("created", "id")
    ]
    return {"conversations": conversations, "documents": documents}


def person_data_erase(*, user_id: int) -> None:
    """Delete the person's conversations (and their messages); the words they sent to the model
    in chat go from the AI call records too, which stay as counts. Documents and everything else
    they made stay with the organisation, attributed to nobody ("a former member")."""
    AgentAction.objects.filter(user_id=user_id, agent_type=AgentAction.AgentType.CHAT).update(
        input_prompt="", output_text="", error=""
    )
    Conversation.objects.filter(user_id=user_id).delete()
    for model, field in _user_references():
        rows = model._default_manager.filter(**{field.attname: user_id})
        if field.null:
            rows.update(**{field.attname: None})
        else:
            rows.delete()
    # The tenant admin's change history (Django's own table) names the user too; since ai 0017 without a
    # database key to public, so nothing else removes these rows.
    LogEntry.objects.filter(user_id=user_id).delete()
