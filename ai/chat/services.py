"""Chat: accept a turn, retrieve, prompt, stream from the model, persist. One service for WebSocket and SSE.

``chat_prepare`` accepts or refuses a turn (sync, in the tenant's schema) and starts embedding the
question off the database thread; ``chat_stream`` then publishes the frames of DESIGN.md. It runs
in a task of its own (ai.chat.answers) so the answer outlives the connection that asked.

Every database step is a sync function that enters ``tenant_context`` itself, run from async
code through ``core.platform.database_steps`` (threads whose connections may last have served
any tenant); each step returns its connection to the pool when it ends.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.access import Reader, reader_of, scope_validate
from ai.chat.stream_slots import stream_slot
from ai.embedding.embedders import query_embedding, query_embedding_soon
from ai.llm import LLMProvider, LLMStream, Usage, estimate_tokens, get_llm_provider
from ai.models import AgentAction, Conversation, Message
from ai.selectors import SearchHit, documents_search, hits_by_document
from ai.services.actions import agent_action_record
from ai.services.prompts import prompt_active
from billing.services import quota_check
from billing.services.reservations import (
    Reservation,
    allowance_checkpoint,
    allowance_release,
    allowance_reserve,
    reserve_tokens_estimate,
)
from core.models import User
from core.platform.admission import Admission, tenant_slot
from core.platform.database_steps import database_step
from core.platform.exceptions import ApplicationError
from core.platform.sql_names import Updated, column, table
from core.platform.validators import UNSTORABLE_CODE, text_unstorable_reason
from tenants.selectors import api_key_id_of

Frame = dict[str, Any]
logger = logging.getLogger(__name__)

NOT_SAVED_REASON = "The answer could not be saved when it ended; this is the text it had then."
CUT_OFF_MESSAGE = "The answer was cut off: the language model's stream ended before the answer was finished."
ANSWER_FAILED_MESSAGE = "The answer could not be completed."
# The least room for an answer a turn needs in the allowance: with less it is refused before anything
# is stored, instead of being cut off after a few words and kept as a failed answer.
LEAST_ANSWER_TOKENS = 256
# Seconds between the attempts to save an ended answer: a database restart or failover takes a few.
FINISH_RETRY_DELAYS = (0.2, 0.5, 1.5)


@dataclass
class ChatTurn:
    """An accepted chat turn, built whole when it is accepted: the question and its answer are
    stored, its slots and allowance are held, and its passages are found (``hits``) or the
    question's embedding is on its way to find them (then ``hits`` is None). What is sent upstream
    is a ChatPrompt of its own, made from the turn once its passages are known."""

    tenant: Any
    user: User
    reader: Reader  # what the turn may read: the asker's collections, narrowed to what they picked
    provider: LLMProvider
    conversation_id: int
    message_id: int
    question_id: int
    replaces: int | None  # the first message this turn superseded (a regenerated or edited turn)
    system: str
    question: str
    history: list[dict[str, str]]
    slot: Admission  # the asker's stream slot and the tenant's share, held until the answer ends
    embedding: Future[list[float]] | None
    hits: list[SearchHit] | None  # None: the passages are found after the start frame
    # What the answer may spend, set aside before the upstream call (None: offline, not billed).
    reservation: Reservation | None


@dataclass(frozen=True)
class ChatPrompt:
    """What a turn sends upstream: the messages (history, then the question with its passages),
    the passages alone, the sources the answer will cite, and what it may spend within the
    allowance it reserved."""

    messages: list[dict[str, str]]
    passages: list[str]
    sources: list[dict[str, Any]]
    max_tokens: int


# Before its passages are known (or when finding them failed): nothing sent, nothing cited.
NO_PROMPT = ChatPrompt(messages=[], passages=[], sources=[], max_tokens=0)


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


@dataclass(frozen=True)
class Question:
    """A checked client frame: the question, its conversation, and what it is scoped to (None: not
    narrowed). A regenerated answer names the answer (``regenerate_of``; its question is asked again,
    ``message`` is empty until then); an edited question names the question (``edit_of``)."""

    message: str
    conversation_id: int | None = None
    collection_ids: tuple[int, ...] | None = None
    document_ids: tuple[int, ...] | None = None
    regenerate_of: int | None = None
    edit_of: int | None = None


def _ids(payload: dict[str, Any], name: str) -> tuple[int, ...] | None:
    value = payload.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > 1000
        or any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in value)
    ):
        raise ApplicationError(f"'{name}' must be a list of ids.", code="bad_request")
    return tuple(value)


def chat_message_validate(payload: Any) -> Question:
    """Check a client frame: ``{"message": str, "conversation_id": int?, "collection_ids": [int]?,
    "document_ids": [int]?}``, or ``{"type": "regenerate", "message_id": <answer>}``, or
    ``{"type": "edit", "message_id": <question>, "message": str}`` (both may narrow with the ids);
    raise bad_request otherwise. (Whether the ids may be read is checked when the turn is accepted.)"""
    if not isinstance(payload, dict):
        raise ApplicationError("Send a JSON object with a 'message'.", code="bad_request")
    kind = payload.get("type", "message")
    if kind not in ("message", "regenerate", "edit"):
        raise ApplicationError("'type' must be 'message', 'regenerate' or 'edit'.", code="bad_request")
    if kind == "regenerate":
        return Question(
            message="",
            regenerate_of=_count(payload, "message_id", least=1),
            collection_ids=_ids(payload, "collection_ids"),
            document_ids=_ids(payload, "document_ids"),
        )
    if kind == "message" and "message_id" in payload:
        raise ApplicationError("'message_id' goes with 'type': 'regenerate' or 'edit'.", code="bad_request")
    edit_of = _count(payload, "message_id", least=1) if kind == "edit" else None
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
    return Question(
        message=message.strip(),
        conversation_id=None if edit_of is not None else conversation_id,
        collection_ids=_ids(payload, "collection_ids"),
        document_ids=_ids(payload, "document_ids"),
        edit_of=edit_of,
    )


def _history(conversation: Conversation, *, before_id: int | None = None) -> list[dict[str, str]]:
    """The newest turns that fit CHAT_HISTORY_TOKENS, oldest first, starting with a user turn
    (before message ``before_id`` only: a regenerated or edited turn continues from there)."""
    budget = settings.CHAT_HISTORY_TOKENS
    turns: list[dict[str, str]] = []
    messages = conversation.messages.filter(status=Message.Status.OK, superseded=False).exclude(content="")
    if before_id is not None:
        messages = messages.filter(id__lt=before_id)
    for message in messages.order_by("-created", "-id")[:50]:
        cost = estimate_tokens(message.content)
        if cost > budget:
            break
        budget -= cost
        turns.append({"role": message.role, "content": message.content})
    turns.reverse()
    while turns and turns[0]["role"] != "user":
        turns.pop(0)
    return turns


# How long a turn's database step waits for its question's vector when the embedder is computing
# it alone or in a small batch (a lone question takes about 1.5 ms on one core with the int8 graph,
# 5 ms with the float one).
EMBEDDING_WAIT_SECONDS = 0.015

NO_RELEVANT_PASSAGES = "No passage of the organisation's documents is relevant to this question."
# The passages are numbered in the prompt; the page links the markers to them (ai.chat.citations).
CITE_PASSAGES = (
    "Each passage in <documents> has an index. When you use a passage, cite it right after the "
    "sentence by its index in square brackets, like [1] or [2]; cite only passages you used."
)


def _prompt(question: str, hits: list[SearchHit]) -> tuple[str, list[str]]:
    if not hits and settings.CHAT_CONTEXT_CHUNKS:
        # Said outright, so the answer says the documents do not cover it instead of citing unrelated ones.
        return f"<documents>\n{NO_RELEVANT_PASSAGES}\n</documents>\n\n{question}", []
    passages = [hit.text for hit in hits]
    # Titles are the users' own text: escaped so one cannot close the tag and pose as instructions.
    documents = "\n".join(
        f'<document index="{number}" title="{html.escape(hit.title, quote=True)}" id="{hit.document_id}">'
        f"\n{hit.text}\n</document>"
        for number, hit in enumerate(hits, start=1)
    )
    return f"{CITE_PASSAGES}\n\n<documents>\n{documents}\n</documents>\n\n{question}", passages


class ConnectionNotAllowed(Exception):
    """The asking connection's credential, membership or tenant is gone (its re-authorisation failed)."""


def chat_prepare(*, tenant: Any, user: User, question: Question) -> ChatTurn:
    """Accept a chat turn or refuse it (ApplicationError): stream slot, quota, conversation,
    history; stores the question and a placeholder answer. Sync, in the tenant's schema.

    The question's embedding starts first (on the embedding thread, below the priority of this
    one): it is CPU work that needs no database, so it runs while this waits on PostgreSQL. A
    regenerated answer's question is read from the database, and embedded then. The passages are
    searched here when the vector is ready in time, otherwise after the start frame.
    """
    return _prepare(tenant=tenant, user=user, **_prepare_arguments(question))


async def chat_prepare_async(
    *,
    tenant: Any,
    user: User,
    question: Question,
    still_allowed: Callable[[], bool] | None = None,
) -> ChatTurn:
    """``chat_prepare`` for async callers (the WebSocket consumer), in one database step.

    ``still_allowed`` (the connection's re-authorisation, sync) runs first in that step; when it
    says no, nothing is stored or spent and ConnectionNotAllowed is raised.
    """
    # Cancelled meanwhile (the socket closed), the accepted turn gives its stream slot back: it
    # would hold it until the slot's TTL.
    return await database_step(_prepare, abandoned=_abandoned)(
        tenant=tenant, user=user, **_prepare_arguments(question), still_allowed=still_allowed
    )


def _abandoned(turn: ChatTurn) -> None:
    turn.slot.release()
    if turn.embedding is not None:
        turn.embedding.cancel()  # not computed if it has not started: the batcher skips it


def _prepare_arguments(question: Question) -> dict[str, Any]:
    return {
        "message": question.message,
        "conversation_id": question.conversation_id,
        "collection_ids": question.collection_ids,
        "document_ids": question.document_ids,
        "regenerate_of": question.regenerate_of,
        "edit_of": question.edit_of,
    }


def _prepare(
    *,
    tenant: Any,
    user: User,
    message: str,
    conversation_id: int | None,
    collection_ids: Sequence[int] | None = None,
    document_ids: Sequence[int] | None = None,
    regenerate_of: int | None = None,
    edit_of: int | None = None,
    still_allowed: Callable[[], bool] | None = None,
) -> ChatTurn:
    # A question, or an edited one: its embedding starts first. A regenerate carries no text.
    embedding = _Embedding(message if regenerate_of is None else None)
    try:
        if still_allowed is not None and not still_allowed():
            raise ConnectionNotAllowed
        provider = get_llm_provider()
        slot = Admission(stream_slot(schema_name=tenant.schema_name, user_id=user.pk))
        slot.acquire()
        try:
            with tenant_context(tenant):
                return _prepare_in_schema(
                    tenant=tenant,
                    user=user,
                    asked=Question(
                        message=message,
                        conversation_id=conversation_id,
                        collection_ids=tuple(collection_ids) if collection_ids is not None else None,
                        document_ids=tuple(document_ids) if document_ids is not None else None,
                        regenerate_of=regenerate_of,
                        edit_of=edit_of,
                    ),
                    provider=provider,
                    slot=slot,
                    embedding=embedding,
                )
        except BaseException:
            slot.release()
            raise
    except BaseException:
        embedding.cancel()
        raise


class _Embedding:
    """A turn's question's embedding (CHAT_CONTEXT_CHUNKS=0: none), started as soon as its text is
    known, and cancelled if the turn is refused."""

    def __init__(self, text: str | None) -> None:
        self.future: Future[list[float]] | None = None
        if text is not None:
            self.start(text)

    def start(self, text: str) -> None:
        if self.future is None and settings.CHAT_CONTEXT_CHUNKS:
            self.future = query_embedding(text)

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()  # not computed if it has not started: the batcher skips it


def _prepare_in_schema(
    *,
    tenant: Any,
    user: User,
    asked: Question,
    provider: LLMProvider,
    slot: Admission,
    embedding: _Embedding,
) -> ChatTurn:
    question, conversation_id = asked.message, asked.conversation_id
    reader = reader_of(tenant=tenant, user=user)
    if asked.collection_ids is not None or asked.document_ids is not None:
        # Refused (404) before anything is stored or spent: a scope is never quietly widened.
        reader = scope_validate(reader=reader, collection_ids=asked.collection_ids, document_ids=asked.document_ids)
    allowance = quota_check(tenant=tenant, feature=AgentAction.AgentType.CHAT, model=provider.model)
    slot.add(tenant_slot(schema_name=tenant.schema_name, limit=allowance.concurrent_requests))
    system = prompt_active(name="chat").system_prompt
    history: list[dict[str, str]] = []
    replaces = None
    if asked.regenerate_of is not None or asked.edit_of is not None:
        # A new turn from one of the asker's questions: the question (again, or as edited) and
        # its answer replace that question and everything after it.
        replaced = _turn_replaced(user=user, asked=asked)
        question, conversation_id, replaces = replaced.question, replaced.conversation_id, replaced.id
        embedding.start(question)  # a regenerated answer's question, read just now
        history = _history(replaced.conversation, before_id=replaced.id)
    elif conversation_id is not None:
        conversation = Conversation.objects.filter(id=conversation_id, user=user).first()
        if conversation is None:
            raise ApplicationError("No such conversation.", code="conversation_not_found", status=404)
        history = _history(conversation)
    # Refused now, before anything is stored, if what is left of the allowance cannot hold the
    # question, its history and the passages it may get; the passages are counted once they are
    # known (_retrieve). Offline answers are not billed: nothing to reserve.
    reservation = None
    if provider.name != "offline":
        prompt_tokens = reserve_tokens_estimate(
            len(system) + len(question) + sum(len(turn["content"]) for turn in history) + _passages_chars_max()
        )
        reservation = allowance_reserve(
            tenant=tenant,
            allowance=allowance,
            feature=AgentAction.AgentType.CHAT,
            model=provider.model,
            prompt_tokens=prompt_tokens,
            max_tokens=int(settings.CHAT_MAX_TOKENS),
            least_output=min(LEAST_ANSWER_TOKENS, int(settings.CHAT_MAX_TOKENS)),
            user_id=user.pk,
            api_key_id=api_key_id_of(user=user),
        )
    try:
        conversation_id, question_id, answer_id = _turn_store(
            user=user, conversation_id=conversation_id, question=question, replaces=replaces
        )
    except BaseException:
        if reservation is not None:
            allowance_release(reservation_id=reservation.id)
        raise
    hits = None
    # Computed while the rows above were written, and ready by now or in a few milliseconds unless
    # the embedder has a queue: searching on this connection then saves the answer a database step
    # of its own before the first token. Under load the step ends at once and searches later.
    vector = query_embedding_soon(embedding.future, wait=EMBEDDING_WAIT_SECONDS) if embedding.future else None
    if vector is not None:
        hits = documents_search(reader=reader, query=question, k=settings.CHAT_CONTEXT_CHUNKS, vector=vector)
    return ChatTurn(
        tenant=tenant,
        user=user,
        reader=reader,
        provider=provider,
        conversation_id=conversation_id,
        message_id=answer_id,
        question_id=question_id,
        replaces=replaces,
        system=system,
        question=question,
        history=history,
        slot=slot,
        embedding=embedding.future,
        hits=hits,
        reservation=reservation,
    )


@dataclass(frozen=True)
class _Replaced:
    """The question a regenerated or edited turn starts from (``id``), with what is asked now."""

    id: int
    conversation_id: int
    conversation: Conversation
    question: str


MESSAGE_NOT_FOUND = "No such message of yours to regenerate or edit."


def _turn_replaced(*, user: User, asked: Question) -> _Replaced:
    """The asker's own current question a regenerated answer or an edited question starts from;
    anything else (someone else's, superseded, a question named as an answer) is not found."""
    own = Message.objects.filter(conversation__user=user, superseded=False).select_related("conversation")
    if asked.regenerate_of is not None:
        answer = own.filter(id=asked.regenerate_of, role=Message.Role.ASSISTANT).first()
        start = (
            own.filter(conversation_id=answer.conversation_id, role=Message.Role.USER, id__lt=answer.id)
            .order_by("-id")
            .first()
            if answer is not None
            else None
        )
    elif asked.edit_of is not None:
        start = own.filter(id=asked.edit_of, role=Message.Role.USER).first()
    else:
        start = None
    if start is None:
        raise ApplicationError(MESSAGE_NOT_FOUND, code="message_not_found", status=404)
    question = asked.message if asked.edit_of is not None else start.content
    return _Replaced(
        id=start.id, conversation_id=start.conversation_id, conversation=start.conversation, question=question
    )


@functools.cache
def _turn_store_sql(new_conversation: bool) -> str:
    conversations, messages = table(Conversation), table(Message)
    c = {name: column(Conversation, name) for name in ("id", "title", "user", "created", "updated")}
    m = {
        name: column(Message, name)
        for name in (
            "id",
            "conversation",
            "role",
            "content",
            "status",
            "sources",
            "input_tokens",
            "output_tokens",
            "created",
            "error",
        )
    }
    if new_conversation:
        conversation = (
            f"INSERT INTO {conversations} ({c['title']}, {c['user']}, {c['created']}, {c['updated']})"
            f" VALUES (%(title)s, %(user)s, %(now)s, %(now)s) RETURNING {c['id']} AS id"
        )
    else:
        conversation = (
            f"UPDATE {conversations} SET {c['updated']} = %(now)s"
            f" WHERE {c['id']} = %(conversation)s AND {c['user']} = %(user)s RETURNING {c['id']} AS id"
        )
    columns = ", ".join(
        m[name]
        for name in ("conversation", "role", "content", "status", "sources", "input_tokens", "output_tokens", "created")
    )
    return (
        f"WITH conversation AS ({conversation}),"
        f" question AS (INSERT INTO {messages} ({columns})"
        " SELECT id, %(user_role)s, %(question)s, %(ok)s, '[]', 0, 0, %(now)s FROM conversation"
        f" RETURNING {m['conversation']} AS conversation_id, {m['id']} AS id),"
        f" answer AS (INSERT INTO {messages} ({columns}, {m['error']})"
        " SELECT conversation_id, %(assistant_role)s, '', %(interrupted)s, '[]', 0, 0, %(now)s, %(unfinished)s"
        " FROM question"
        f" RETURNING {m['conversation']} AS conversation_id, {m['id']} AS id)"
        " SELECT answer.conversation_id, question.id, answer.id FROM answer, question"
    )


def _turn_store(
    *, user: User, conversation_id: int | None, question: str, replaces: int | None = None
) -> tuple[int, int, int]:
    """Store a turn in one statement: the conversation (created, or its ``updated`` moved on), the
    question, and the answer's placeholder (interrupted until its stream settles it), whose id the
    start frame names; returns (conversation id, question id, answer id). The question is inserted
    before the answer (the answer reads the question's row), so ids keep the turn's order.
    ``replaces``: the conversation's messages from that one on are superseded first, in the same
    transaction (a regenerated or edited turn).

    Plain SQL because it runs before every first token and building the three statements through
    the ORM cost three times more than running this one (1.5 ms against 0.5 ms, measured).
    """
    if replaces is not None and conversation_id is not None:
        with transaction.atomic():
            Message.objects.filter(conversation_id=conversation_id, id__gte=replaces, superseded=False).update(
                superseded=True
            )
            return _turn_store(user=user, conversation_id=conversation_id, question=question)
    with connection.cursor() as cursor:
        cursor.execute(
            _turn_store_sql(conversation_id is None),
            {
                "title": question[:80],
                "user": user.pk,
                "conversation": conversation_id,
                "now": timezone.now(),
                "question": question,
                "user_role": Message.Role.USER,
                "assistant_role": Message.Role.ASSISTANT,
                "ok": Message.Status.OK,
                "interrupted": Message.Status.INTERRUPTED,
                "unfinished": Message.UNFINISHED,
            },
        )
        row = cursor.fetchone()
    if row is None:  # the conversation was deleted since it was read: nothing was stored
        raise ApplicationError("No such conversation.", code="conversation_not_found", status=404)
    return int(row[0]), int(row[1]), int(row[2])


def _passages_chars_max() -> int:
    """The most characters the passages may add to a prompt (their tags and titles included),
    reserved before they are known."""
    return int(settings.CHAT_CONTEXT_CHUNKS) * (int(settings.CHUNK_TOKENS) * 4 + 300)


def _max_tokens_within(reservation: Reservation | None, *, system: str, messages: list[dict[str, str]]) -> int:
    """The answer may spend what its reservation holds after the prompt; none left is a 402."""
    limit = int(settings.CHAT_MAX_TOKENS)
    if reservation is None:
        return limit
    prompt_tokens = reserve_tokens_estimate(len(system) + sum(len(message["content"]) for message in messages))
    max_tokens = reservation.max_output(prompt_tokens=prompt_tokens, limit=limit)
    if max_tokens <= 0:
        raise ApplicationError(
            f"This organisation has about {reservation.tokens:,} tokens left this period, not enough for this "
            f"question with its passages (about {prompt_tokens:,}). Upgrade the plan to continue.",
            code="quota_exceeded",
            status=402,
        )
    return max_tokens


def _allowance_spent(turn: ChatTurn, stream: LLMStream) -> bool:
    grant = turn.reservation.tokens if turn.reservation is not None else None
    return grant is not None and stream.usage.total >= grant


def _allowance_ran_out(stream: LLMStream) -> ApplicationError:
    return ApplicationError(
        "This organisation's token allowance ran out during this answer, so it was stopped; "
        "the tokens it used are counted. Upgrade the plan to continue.",
        code="quota_exceeded",
        status=402,
        extra={"usage": stream.usage.as_dict()},
    )


async def _retrieve(turn: ChatTurn) -> ChatPrompt:
    """The prompt, with the passages nearest the question (CHAT_CONTEXT_CHUNKS=0: none)."""
    hits = turn.hits or []
    if turn.hits is None and turn.embedding is not None:
        vector = await asyncio.wrap_future(turn.embedding)
        hits = await database_step(_search)(
            tenant=turn.tenant, reader=turn.reader, question=turn.question, vector=vector
        )
    content, passages = _prompt(turn.question, hits)
    messages = [*turn.history, {"role": "user", "content": content}]
    return ChatPrompt(
        messages=messages,
        passages=passages,
        sources=_sources(hits),
        max_tokens=_max_tokens_within(turn.reservation, system=turn.system, messages=messages),
    )


def _search(*, tenant: Any, reader: Reader, question: str, vector: list[float]) -> list[SearchHit]:
    with tenant_context(tenant):
        return documents_search(reader=reader, query=question, k=settings.CHAT_CONTEXT_CHUNKS, vector=vector)


def _sources(hits: list[SearchHit]) -> list[dict[str, Any]]:
    """One source per document, best first: its best passage (``chunk_id``), all its passages, the
    numbers they had in the prompt (``citations``, the answer's [n] markers) and a score."""
    numbers = {hit.chunk_id: number for number, hit in enumerate(hits, start=1)}
    return [
        {
            "document_id": document.document_id,
            "title": document.title,
            "chunk_id": document.chunk_id,
            "chunk_ids": [passage.chunk_id for passage in document.passages],
            "citations": [numbers[passage.chunk_id] for passage in document.passages],
            "relevance": document.relevance,
        }
        for document in hits_by_document(hits)
    ]


def _finish(*, turn: ChatTurn, prompt: ChatPrompt, stream: LLMStream, status: str, error: str, started: float) -> None:
    """Settle the assistant message and write its AgentAction and usage, in one transaction."""
    usage = stream.usage
    with tenant_context(turn.tenant), transaction.atomic():
        action = agent_action_record(
            tenant=turn.tenant,
            agent_type=AgentAction.AgentType.CHAT,
            user=turn.user,
            provider=turn.provider.name,
            model=stream.model or turn.provider.model,
            input_prompt=prompt.messages[-1]["content"] if prompt.messages else turn.question,
            output_text=stream.text,
            usage=usage,
            latency_ms=int((time.perf_counter() - started) * 1000),
            status=status,
            error=error,
            conversation_id=turn.conversation_id,
            reservation_id=turn.reservation.id if turn.reservation is not None else None,
        )
        _answer_settled().run(
            turn.message_id,
            [stream.text, status, error, prompt.sources, _message_input_tokens(usage), usage.output_tokens, action.pk],
        )


@functools.cache
def _answer_settled() -> Updated[Message]:
    """The settled answer's columns, in ``_finish``'s order."""
    fields = ("content", "status", "error", "sources", "input_tokens", "output_tokens", "agent_action_id")
    return Updated(Message, fields)


def _message_input_tokens(usage: Usage) -> int:
    """What a message counts as its input: the prompt, cache writes and cache reads alike."""
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def _checkpoint(*, turn: ChatTurn, text: str, usage: Usage, reason: str) -> None:
    """Save an unsettled answer's text and usage so far into its message, left ``interrupted`` with
    ``reason``; an answer settled meanwhile (it has its AgentAction) is left alone. The usage goes
    on its allowance reservation too, whose expiry bills it if this process dies before settling."""
    with tenant_context(turn.tenant), transaction.atomic():
        unsettled = _answer_checkpointed().run(
            turn.message_id,
            [text, Message.Status.INTERRUPTED, reason, _message_input_tokens(usage), usage.output_tokens],
        )
        if unsettled and turn.reservation is not None:
            allowance_checkpoint(
                reservation_id=turn.reservation.id,
                input_tokens=_message_input_tokens(usage),
                output_tokens=usage.output_tokens,
            )


@functools.cache
def _answer_checkpointed() -> Updated[Message]:
    """An unsettled answer's columns, in ``_checkpoint``'s order."""
    fields = ("content", "status", "error", "input_tokens", "output_tokens")
    return Updated(Message, fields, still_null=("agent_action_id",))


class _Keeper:
    """What runs beside an answer's token loop, on a clock of its own (a slow upstream sends no
    tokens for a while): it refreshes the answer's slots, so a process that dies frees them within
    their TTL, and every CHAT_CHECKPOINT_SECONDS saves the text and usage so far into the message,
    so a crash loses at most that much. One checkpoint at a time, on the records lane; the token
    loop never waits for one, and no connection is held between them."""

    def __init__(self, turn: ChatTurn) -> None:
        self.turn = turn
        self.stream: LLMStream | None = None
        self._saved: tuple[str, dict[str, int]] = ("", Usage().as_dict())
        self._writing: asyncio.Task[None] | None = None
        self._clock = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        every = float(settings.CHAT_CHECKPOINT_SECONDS)
        # Slots refresh at most once per third of their TTL: ticking at a quarter keeps every gap
        # between refreshes well inside the TTL.
        tick = min(every, settings.CHAT_STREAM_SLOT_TTL_SECONDS / 4)
        due = time.monotonic() + every
        while True:
            await asyncio.sleep(tick)
            try:
                self.turn.slot.refresh()
            except Exception:
                logger.warning("could not refresh the slots of chat answer %s", self.turn.message_id, exc_info=True)
            if time.monotonic() >= due - tick / 10:
                due = time.monotonic() + every
                self._save()

    def _save(self) -> None:
        stream = self.stream
        if stream is None or (self._writing is not None and not self._writing.done()):
            return
        snapshot = (stream.text, stream.usage.as_dict())
        if snapshot != self._saved:
            self._saved = snapshot
            self._writing = asyncio.ensure_future(self._write(*snapshot))

    async def _write(self, text: str, usage: dict[str, int]) -> None:
        try:
            await database_step(_checkpoint, lane="records")(
                turn=self.turn, text=text, usage=Usage(**usage), reason=Message.UNFINISHED
            )
        except Exception:
            logger.warning("checkpoint of chat answer %s failed", self.turn.message_id, exc_info=True)

    async def stop(self) -> None:
        """Stop the clock, and let a checkpoint in flight land before the answer is settled."""
        self.stop_clock()
        await asyncio.wait({self._clock, *([self._writing] if self._writing else [])})

    def stop_clock(self) -> None:
        self._clock.cancel()


async def _settle(
    *, turn: ChatTurn, prompt: ChatPrompt, stream: LLMStream, status: str, error: str, started: float
) -> bool:
    """``_finish``, tried again after FINISH_RETRY_DELAYS (each attempt is one transaction, so a
    failed one leaves nothing behind). True once saved. When every attempt failed, say so loudly
    and keep what can be kept: the text and usage, in the message, as a crashed answer is left
    (not billed yet, and explained); False."""
    for delay in (*FINISH_RETRY_DELAYS, None):
        try:
            await database_step(_finish, lane="records")(
                turn=turn, prompt=prompt, stream=stream, status=status, error=error, started=started
            )
            return True
        except Exception:
            if delay is None:
                break
            logger.warning("saving chat answer %s failed; trying again in %s s", turn.message_id, delay, exc_info=True)
            await asyncio.sleep(delay)
    logger.exception(
        "chat answer %s of tenant %s could not be saved after %d attempts (status %s, %d characters, usage %s):"
        " its message keeps the text and usage unbilled",
        turn.message_id,
        turn.tenant.schema_name,
        len(FINISH_RETRY_DELAYS) + 1,
        status,
        len(stream.text),
        stream.usage.as_dict(),
    )
    try:
        await database_step(_checkpoint, lane="records")(
            turn=turn, text=stream.text, usage=stream.usage, reason=NOT_SAVED_REASON
        )
    except Exception:
        logger.critical("chat answer %s: not even its text could be saved", turn.message_id, exc_info=True)
    return False


async def chat_stream(*, turn: ChatTurn, publish: Callable[[Frame], None]) -> None:
    """Answer an accepted turn: publish its frames (start, token..., done | error) as they come.

    A failure after the start frame, whatever it is, is published as an ``error`` frame, with the
    text and usage so far saved and billed; so is a stream that ended without the upstream saying
    it was finished (``upstream_incomplete``). Cancelling the task that runs this closes the
    upstream request, saves the partial answer as interrupted with its tokens (the reason given to
    ``Task.cancel`` is recorded) and publishes a ``done`` frame with status ``interrupted``; then
    the cancellation goes on. While it streams, its message is checkpointed (``_Keeper``).
    """
    started = time.perf_counter()
    stream = LLMStream(model=turn.provider.model)  # nothing streamed yet, nothing spent
    cancelled: asyncio.CancelledError | None = None
    keeper = _Keeper(turn)
    prompt = NO_PROMPT
    try:
        start: Frame = {
            "type": "start",
            "conversation_id": turn.conversation_id,
            "message_id": turn.message_id,
            "question_id": turn.question_id,
        }
        if turn.replaces is not None:
            start["replaces"] = turn.replaces
        publish(start)
        try:
            prompt = await _retrieve(turn)
            stream = keeper.stream = turn.provider.stream(
                system=turn.system,
                messages=prompt.messages,
                max_tokens=prompt.max_tokens,
                context_passages=prompt.passages,
            )
            async with stream:
                async for text in stream:
                    publish({"type": "token", "token": text})
                    # Tokens that arrived together are parsed without a pause: let the followers
                    # send this one before the next is parsed.
                    await asyncio.sleep(0)
                    if _allowance_spent(turn, stream):
                        raise _allowance_ran_out(stream)  # leaving the block closes the upstream request
            if not stream.finished:  # the connection ended before the upstream said the answer had
                raise ApplicationError(CUT_OFF_MESSAGE, code="upstream_incomplete", status=502)
            if prompt.max_tokens < settings.CHAT_MAX_TOKENS and stream.stop_reason == "max_tokens":
                raise _allowance_ran_out(stream)  # the cap the allowance set ended it, not the usual limit
        except ApplicationError as exc:
            status, error, final = Message.Status.ERROR, exc.message, error_frame(exc)
        except asyncio.CancelledError as exc:
            cancelled = exc
            status, error, final = Message.Status.INTERRUPTED, str(exc) or "The answer was stopped.", None
        except Exception as exc:
            logger.exception("chat answer %s failed", turn.message_id)
            failure = ApplicationError(ANSWER_FAILED_MESSAGE, code="internal_error", status=500)
            status, error, final = Message.Status.ERROR, f"{ANSWER_FAILED_MESSAGE} ({exc!r})", error_frame(failure)
        else:
            status, error, final = Message.Status.OK, "", None
        if await _complete(keeper.stop()):
            cancelled = cancelled or asyncio.CancelledError()
        # Persist before the final frame, so a client that saw "done" finds the answer stored.
        saving = asyncio.ensure_future(
            _settle(turn=turn, prompt=prompt, stream=stream, status=status, error=error, started=started)
        )
        if await _complete(saving):
            cancelled = cancelled or asyncio.CancelledError()
        if not saving.result():
            final = error_frame(ApplicationError(NOT_SAVED_REASON, code="internal_error", status=500))
        publish(final or _done_frame(turn=turn, prompt=prompt, stream=stream, status=status))
    finally:
        keeper.stop_clock()
        turn.slot.release()
    if cancelled is not None:
        raise cancelled


def _done_frame(*, turn: ChatTurn, prompt: ChatPrompt, stream: LLMStream, status: str) -> Frame:
    return {
        "type": "done",
        "done": True,
        "status": status,
        "message_id": turn.message_id,
        "conversation_id": turn.conversation_id,
        "usage": stream.usage.as_dict(),
        "provider": turn.provider.name,
        "sources": prompt.sources,
    }


async def _complete(awaitable: Awaitable[Any]) -> bool:
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
