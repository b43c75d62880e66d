"""Chat: accept a turn, retrieve, prompt, stream from the model, persist. One service for WebSocket and SSE.

``chat_prepare`` accepts or refuses a turn (sync, in the tenant's schema) and starts embedding the
question off the database thread; ``chat_stream`` then publishes the frames of DESIGN.md. It runs
in a task of its own (ai.services.chat_answers) so the answer outlives the connection that asked.

Every database step is a sync function that enters ``tenant_context`` itself: Channels runs
``database_sync_to_async`` calls on one shared thread whose connection may hold any tenant's
search_path. The steps of a chat run on a few threads of their own (CHAT_DATABASE_THREADS) rather
than that one thread, so hundreds of chats at once are not queued behind each other's round trips;
each step returns its connection to the pool when it ends.
"""

from __future__ import annotations

import asyncio
import functools
import html
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections, transaction
from django_tenants.utils import tenant_context

from ai.embedders import query_embedding
from ai.llm import LLMProvider, LLMStream, estimate_tokens, get_llm_provider
from ai.models import AgentAction, Conversation, Message
from ai.selectors import SearchHit, documents_search, hits_by_document
from ai.services.actions import agent_action_record
from ai.services.prompts import prompt_active
from ai.services.stream_slots import StreamSlot
from billing.services import quota_check
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.validators import UNSTORABLE_CODE, text_unstorable_reason

Frame = dict[str, Any]
T = TypeVar("T")


@functools.cache
def _database_threads(purpose: str) -> ThreadPoolExecutor:
    workers = settings.CHAT_DATABASE_THREADS if purpose == "setup" else max(1, settings.CHAT_DATABASE_THREADS // 2)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"strata-chat-{purpose}")


def _in_database(step: Callable[..., T], *, purpose: str = "setup") -> Callable[..., Awaitable[T]]:
    """A sync database step of a chat, awaitable, run on the chat's database threads. The steps
    before the first token ("setup") never queue behind the records of finished answers, which
    wait on the tenant's usage row lock ("records").

    Like Channels' ``database_sync_to_async`` it returns the thread's connection to the pool when
    the step ends, but only after handing the caller its result: the pool's reset of the
    connection is one round trip less before the first token.
    """
    executor = _database_threads(purpose)

    async def run(*args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            close_old_connections()
            try:
                result = step(*args, **kwargs)
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)
            finally:
                close_old_connections()

        executor.submit(work)
        return await future

    return run


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


@dataclass
class ChatTurn:
    """An accepted chat turn: the question and its answer are stored, the stream slot is held and
    the question's embedding is on its way; retrieval fills in the prompt."""

    tenant: Any
    user: User
    provider: LLMProvider
    conversation_id: int
    message_id: int
    system: str
    question: str
    history: list[dict[str, str]]
    slot: StreamSlot
    embedding: Future[list[float]] | None
    hits: list[SearchHit] | None = None  # None: retrieval still to do
    messages: list[dict[str, str]] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    # Tokens left in a hard-limited allowance when the turn was accepted (None: unlimited or offline).
    token_budget: int | None = None
    max_tokens: int = 0  # set with the prompt: what the answer may spend within the allowance


def error_frame(exc: ApplicationError) -> Frame:
    return {"type": "error", **exc.as_dict()}


def chat_resume_validate(payload: dict[str, Any]) -> tuple[int, int]:
    """Check a resume frame: ``{"type": "resume", "message_id": int, "after": int?}``."""
    return _count(payload, "message_id", least=1), _count(payload, "after", least=0, default=0)


def _count(payload: dict[str, Any], name: str, *, least: int, default: int | None = None) -> int:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ApplicationError(f"'{name}' must be an integer of at least {least}.", code="bad_request")
    return value


def chat_message_validate(payload: Any) -> tuple[str, int | None]:
    """Check a client frame: ``{"message": str, "conversation_id": int?}``; raise bad_request otherwise."""
    if not isinstance(payload, dict):
        raise ApplicationError("Send a JSON object with a 'message'.", code="bad_request")
    message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ApplicationError("'message' must be a non-empty string.", code="bad_request")
    unstorable = text_unstorable_reason(message)
    if unstorable:
        raise ApplicationError(f"'message': {unstorable}", code=UNSTORABLE_CODE)
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


def _prompt(question: str, hits: list[SearchHit]) -> tuple[str, list[str]]:
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
    history; stores the question and a placeholder answer. Sync, in the tenant's schema.

    The question's embedding starts first (batched with other questions, on the embedding
    thread): it is CPU work that needs no database, so it runs while this waits on PostgreSQL.
    The passages are searched here when it is ready in time, otherwise after the start frame.
    """
    provider = get_llm_provider()
    slot = StreamSlot(schema_name=tenant.schema_name, user_id=user.pk)
    slot.acquire()
    try:
        embedding = query_embedding(message) if settings.CHAT_CONTEXT_CHUNKS else None
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


async def chat_prepare_async(*, tenant: Any, user: User, message: str, conversation_id: int | None = None) -> ChatTurn:
    """``chat_prepare`` for async callers (the WebSocket consumer), on the chat's database threads."""
    return await _in_database(chat_prepare)(tenant=tenant, user=user, message=message, conversation_id=conversation_id)


def _prepare_in_schema(
    *,
    tenant: Any,
    user: User,
    question: str,
    conversation_id: int | None,
    provider: LLMProvider,
    slot: StreamSlot,
    embedding: Future[list[float]] | None,
) -> ChatTurn:
    remaining = quota_check(feature=AgentAction.AgentType.CHAT, model=provider.model)
    budget = None if provider.name == "offline" else remaining  # offline answers are not billed
    system = prompt_active(name="chat").system_prompt
    with transaction.atomic():
        if conversation_id is None:
            conversation = Conversation.objects.create(user=user, title=question[:80])
            history: list[dict[str, str]] = []
        else:
            found = Conversation.objects.filter(id=conversation_id, user=user).first()
            if found is None:
                raise ApplicationError("No such conversation.", code="conversation_not_found", status=404)
            conversation = found
            history = _history(conversation)
            conversation.save(update_fields=["updated"])
        # Refused now, before anything is stored, if the question and its history alone do not fit
        # what is left; the passages are counted once they are known (_retrieve).
        _max_tokens_within(budget, system=system, messages=[*history, {"role": "user", "content": question}])
        # The answer is created now so the start frame can name it; its status is settled when
        # the stream ends. One INSERT for both rows.
        _, answer = Message.objects.bulk_create(
            [
                Message(conversation=conversation, role=Message.Role.USER, content=question),
                Message(conversation=conversation, role=Message.Role.ASSISTANT, status=Message.Status.INTERRUPTED),
            ]
        )
    hits = None
    if embedding is not None and embedding.done() and not embedding.cancelled() and embedding.exception() is None:
        # Usually ready by now, computed while the rows above were written: searching on this
        # connection saves the answer a database step of its own before the first token.
        hits = documents_search(query=question, k=settings.CHAT_CONTEXT_CHUNKS, vector=embedding.result())
    return ChatTurn(
        tenant=tenant,
        user=user,
        provider=provider,
        conversation_id=conversation.id,
        message_id=answer.id,
        system=system,
        question=question,
        history=history,
        slot=slot,
        embedding=embedding,
        hits=hits,
        token_budget=budget,
    )


def _max_tokens_within(budget: int | None, *, system: str, messages: list[dict[str, str]]) -> int:
    """The answer may spend what the allowance has left after the prompt; none left is a 402."""
    limit = int(settings.CHAT_MAX_TOKENS)
    if budget is None:
        return limit
    prompt_tokens = estimate_tokens(system) + sum(estimate_tokens(message["content"]) for message in messages)
    if budget <= prompt_tokens:
        raise ApplicationError(
            f"This organisation has {budget:,} tokens left this period, not enough for this question "
            f"(about {prompt_tokens:,}). Upgrade the plan to continue.",
            code="quota_exceeded",
            status=402,
        )
    return min(limit, budget - prompt_tokens)


def _allowance_spent(turn: ChatTurn, stream: LLMStream) -> bool:
    return turn.token_budget is not None and stream.usage.total >= turn.token_budget


def _allowance_ran_out(stream: LLMStream) -> ApplicationError:
    return ApplicationError(
        "This organisation's token allowance ran out during this answer, so it was stopped; "
        "the tokens it used are counted. Upgrade the plan to continue.",
        code="quota_exceeded",
        status=402,
        extra={"usage": stream.usage.as_dict()},
    )


async def _retrieve(turn: ChatTurn) -> None:
    """Put the passages nearest the question into the prompt (CHAT_CONTEXT_CHUNKS=0: none)."""
    hits = turn.hits or []
    if turn.hits is None and turn.embedding is not None:
        vector = await asyncio.wrap_future(turn.embedding)
        hits = await _in_database(_search)(tenant=turn.tenant, question=turn.question, vector=vector)
    content, turn.passages = _prompt(turn.question, hits)
    turn.messages = [*turn.history, {"role": "user", "content": content}]
    turn.sources = _sources(hits)
    turn.max_tokens = _max_tokens_within(turn.token_budget, system=turn.system, messages=turn.messages)


def _search(*, tenant: Any, question: str, vector: list[float]) -> list[SearchHit]:
    with tenant_context(tenant):
        return documents_search(query=question, k=settings.CHAT_CONTEXT_CHUNKS, vector=vector)


def _sources(hits: list[SearchHit]) -> list[dict[str, Any]]:
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
            input_prompt=turn.messages[-1]["content"] if turn.messages else turn.question,
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


async def chat_stream(*, turn: ChatTurn, publish: Callable[[Frame], None]) -> None:
    """Answer an accepted turn: publish its frames (start, token..., done | error) as they come.

    A failure after the start frame is published as an ``error`` frame. Cancelling the task that
    runs this closes the upstream request, saves the partial answer as interrupted with its
    tokens (the reason given to ``Task.cancel`` is recorded) and publishes a ``done`` frame with
    status ``interrupted``; then the cancellation goes on.
    """
    started = time.perf_counter()
    stream = LLMStream(model=turn.provider.model)  # nothing streamed yet, nothing spent
    cancelled: asyncio.CancelledError | None = None
    try:
        publish({"type": "start", "conversation_id": turn.conversation_id, "message_id": turn.message_id})
        try:
            await _retrieve(turn)
            stream = turn.provider.stream(
                system=turn.system,
                messages=turn.messages,
                max_tokens=turn.max_tokens,
                context_passages=turn.passages,
            )
            async with stream:
                async for text in stream:
                    turn.slot.refresh()
                    publish({"type": "token", "token": text})
                    if _allowance_spent(turn, stream):
                        raise _allowance_ran_out(stream)  # leaving the block closes the upstream request
            if turn.max_tokens < settings.CHAT_MAX_TOKENS and stream.stop_reason == "max_tokens":
                raise _allowance_ran_out(stream)  # the cap the allowance set ended it, not the usual limit
        except ApplicationError as exc:
            status, error, final = Message.Status.ERROR, exc.message, error_frame(exc)
        except asyncio.CancelledError as exc:
            cancelled = exc
            status, error, final = Message.Status.INTERRUPTED, str(exc) or "The answer was stopped.", None
        else:
            status, error, final = Message.Status.OK, "", None
        # Persist before the final frame, so a client that saw "done" finds the answer stored.
        saving = _in_database(_finish, purpose="records")(
            turn=turn, stream=stream, status=status, error=error, started=started
        )
        if await _complete(saving):
            cancelled = cancelled or asyncio.CancelledError()
        publish(final or _done_frame(turn=turn, stream=stream, status=status))
    finally:
        turn.slot.release()
    if cancelled is not None:
        raise cancelled


def _done_frame(*, turn: ChatTurn, stream: LLMStream, status: str) -> Frame:
    return {
        "type": "done",
        "done": True,
        "status": status,
        "message_id": turn.message_id,
        "conversation_id": turn.conversation_id,
        "usage": stream.usage.as_dict(),
        "provider": turn.provider.name,
        "sources": turn.sources,
    }


async def _complete(awaitable: Awaitable[None]) -> bool:
    """Run ``awaitable`` to its end even if this task is cancelled meanwhile (a cancelled answer
    must still get its partial text and tokens recorded); True if a cancellation came."""
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            await asyncio.shield(future)
            return cancelled
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            cancelled = True
