"""Chat: retrieve, prompt, stream from the model, persist. One service for WebSocket and SSE.

``chat_stream`` is an async generator of the frames of DESIGN.md. Every database step is a
sync function run through ``database_sync_to_async`` *inside* ``tenant_context``: Channels runs
those calls on one shared thread whose connection may hold any tenant's search_path.
"""

from __future__ import annotations

import asyncio
import functools
import html
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django_tenants.utils import tenant_context

from ai.embedders import get_embedder
from ai.llm import LLMStream, estimate_tokens, get_llm_provider
from ai.models import AgentAction, Conversation, Message
from ai.selectors import documents_search, hits_by_document
from ai.services.actions import agent_action_record
from ai.services.prompts import prompt_active
from ai.services.stream_slots import StreamSlot
from billing.services import quota_check
from core.models import User
from core.platform.exceptions import ApplicationError

Frame = dict[str, Any]


@functools.cache
def _embedding_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="strata-embed")


@dataclass
class ChatTurn:
    """Everything decided before the model is called: a prepared, accepted chat turn."""

    tenant: Any
    user: User
    provider: Any
    conversation_id: int
    message_id: int
    system: str
    messages: list[dict[str, str]]
    passages: list[str]
    slot: StreamSlot
    sources: list[dict[str, Any]]


def error_frame(exc: ApplicationError) -> Frame:
    return {"type": "error", **exc.as_dict()}


def chat_message_validate(payload: Any) -> tuple[str, int | None]:
    """Check a client frame: ``{"message": str, "conversation_id": int?}``; raise bad_request otherwise."""
    if not isinstance(payload, dict):
        raise ApplicationError("Send a JSON object with a 'message'.", code="bad_request")
    message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ApplicationError("'message' must be a non-empty string.", code="bad_request")
    if len(message) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ApplicationError(
            f"'message' is longer than {settings.CHAT_MAX_MESSAGE_CHARS:,} characters.",
            code="message_too_long",
            status=413,
        )
    conversation_id = payload.get("conversation_id")
    if conversation_id is not None and (isinstance(conversation_id, bool) or not isinstance(conversation_id, int)):
        raise ApplicationError("'conversation_id' must be an integer.", code="bad_request")
    return message.strip(), conversation_id


def _history(conversation: Conversation) -> list[dict[str, str]]:
    """The newest turns that fit CHAT_HISTORY_TOKENS, oldest first, starting with a user turn."""
    budget = settings.CHAT_HISTORY_TOKENS
    turns: list[dict[str, str]] = []
    for message in (
        conversation.messages.filter(status=Message.Status.OK).exclude(content="").order_by("-created", "-id")[:50]
    ):
        cost = estimate_tokens(message.content)
        if cost > budget:
            break
        budget -= cost
        turns.append({"role": message.role, "content": message.content})
    turns.reverse()
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    return turns


NO_RELEVANT_PASSAGES = "No passage of the organisation's documents is relevant to this question."


def _prompt(question: str, hits: list[Any]) -> tuple[str, list[str]]:
    if not hits and settings.CHAT_CONTEXT_CHUNKS:
        # Said outright, so the answer says the documents do not cover it instead of citing unrelated ones.
        return f"<documents>\n{NO_RELEVANT_PASSAGES}\n</documents>\n\n{question}", []
    passages = [hit.text for hit in hits]
    # Titles are the users' own text: escaped so one cannot close the tag and pose as instructions.
    documents = "\n".join(
        f'<document title="{html.escape(hit.title, quote=True)}" id="{hit.document_id}">\n{hit.text}\n</document>'
        for hit in hits
    )
    return f"<documents>\n{documents}\n</documents>\n\n{question}", passages


def chat_prepare(*, tenant: Any, user: User, message: str, conversation_id: int | None = None) -> ChatTurn:
    """Accept a chat turn or refuse it (ApplicationError): stream slot, quota, conversation,
    retrieval, prompt; stores the question and a placeholder answer. Sync, in the tenant's schema."""
    provider = get_llm_provider()
    slot = StreamSlot(schema_name=tenant.schema_name, user_id=user.pk)
    slot.acquire()
    # The query embedding is CPU work that needs no database: it runs while the checks and
    # history reads below wait on PostgreSQL.
    embedding = _embedding_pool().submit(get_embedder().embed_query, message) if settings.CHAT_CONTEXT_CHUNKS else None
    try:
        with tenant_context(tenant):
            return _prepare_in_schema(
                tenant=tenant,
                user=user,
                question=message,
                conversation_id=conversation_id,
                provider=provider,
                slot=slot,
                embedding=embedding,
            )
    except BaseException:
        slot.release()
        raise


def _prepare_in_schema(
    *,
    tenant: Any,
    user: User,
    question: str,
    conversation_id: int | None,
    provider: Any,
    slot: StreamSlot,
    embedding: Future[list[float]] | None,
) -> ChatTurn:
    quota_check(feature=AgentAction.AgentType.CHAT, model=provider.model)
    if conversation_id is None:
        conversation = Conversation.objects.create(user=user, title=question[:80])
    else:
        conversation = Conversation.objects.filter(id=conversation_id, user=user).first()
        if conversation is None:
            raise ApplicationError("No such conversation.", code="conversation_not_found", status=404)
    history = _history(conversation)
    # CHAT_CONTEXT_CHUNKS=0 turns retrieval off: a plain chat with the model.
    hits = (
        documents_search(query=question, k=settings.CHAT_CONTEXT_CHUNKS, vector=embedding.result()) if embedding else []
    )
    content, passages = _prompt(question, hits)
    system = prompt_active(name="chat").system_prompt
    with transaction.atomic():
        # The answer is created now so the start frame can name it; its status is settled when
        # the stream ends. One INSERT for both rows.
        _, answer = Message.objects.bulk_create(
            [
                Message(conversation=conversation, role=Message.Role.USER, content=question),
                Message(conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.INTERRUPTED),
            ]
        )
        conversation.save(update_fields=["updated"])
    return ChatTurn(
        tenant=tenant,
        user=user,
        provider=provider,
        conversation_id=conversation.id,
        message_id=answer.id,
        system=system,
        messages=[*history, {"role": "user", "content": content}],
        passages=passages,
        slot=slot,
        sources=_sources(hits),
    )


def _sources(hits: list[Any]) -> list[dict[str, Any]]:
    """One source per document, best first: its best passage (``chunk_id``), all its passages and a score."""
    return [
        {
            "document_id": document.document_id,
            "title": document.title,
            "chunk_id": document.chunk_id,
            "chunk_ids": [passage.chunk_id for passage in document.passages],
            "relevance": document.relevance,
        }
        for document in hits_by_document(hits)
    ]


def _finish(*, turn: ChatTurn, stream: LLMStream, status: str, error: str, started: float) -> None:
    """Settle the assistant message and write its AgentAction and usage, in one transaction."""
    usage = stream.usage
    with tenant_context(turn.tenant), transaction.atomic():
        action = agent_action_record(
            agent_type=AgentAction.AgentType.CHAT,
            user=turn.user,
            provider=turn.provider.name,
            model=stream.model or turn.provider.model,
            input_prompt=turn.messages[-1]["content"],
            output_text=stream.text,
            usage=usage,
            latency_ms=int((time.perf_counter() - started) * 1000),
            status=status,
            error=error,
            conversation_id=turn.conversation_id,
        )
        Message.objects.filter(id=turn.message_id).update(
            content=stream.text,
            status=status,
            sources=turn.sources,
            input_tokens=usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens,
            output_tokens=usage.output_tokens,
            agent_action=action,
        )


async def chat_stream(*, turn: ChatTurn) -> AsyncIterator[Frame]:
    """Answer an accepted turn as frames: start, token..., done | error.

    Failures after the start frame become an ``error`` frame. If the consumer stops iterating
    (the client went away), the upstream request is closed and the partial answer is saved as
    interrupted with its tokens.
    """
    started = time.perf_counter()
    stream = turn.provider.stream(
        system=turn.system, messages=turn.messages, max_tokens=settings.CHAT_MAX_TOKENS, context_passages=turn.passages
    )
    finished = False

    async def finish(status: str, error: str = "") -> None:
        nonlocal finished
        finished = True
        # Shielded: a cancelled consumer must still get its partial answer and tokens recorded.
        await asyncio.shield(
            database_sync_to_async(_finish)(turn=turn, stream=stream, status=status, error=error, started=started)
        )

    try:
        yield {"type": "start", "conversation_id": turn.conversation_id, "message_id": turn.message_id}
        try:
            async with stream:
                async for text in stream:
                    turn.slot.refresh()
                    yield {"type": "token", "token": text}
        except ApplicationError as exc:
            await finish(Message.Status.ERROR, exc.message)
            yield error_frame(exc)
            return
        # Persist before "done", so a client that saw "done" finds the answer stored.
        await finish(Message.Status.OK)
        yield {
            "type": "done",
            "done": True,
            "message_id": turn.message_id,
            "conversation_id": turn.conversation_id,
            "usage": stream.usage.as_dict(),
            "provider": turn.provider.name,
            "sources": turn.sources,
        }
    finally:
        turn.slot.release()
        if not finished:
            await finish(Message.Status.INTERRUPTED, "The client went away.")
