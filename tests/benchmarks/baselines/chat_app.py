"""Strata's chat turn rebuilt on FastAPI + SQLAlchemy 2 async (asyncpg): the baseline of bench_chat_baseline.py.

It mirrors, per turn, what ``ai.consumers.ChatConsumer`` (WebSocket ``/ws/chat/``) and
``ai.api.ChatSseApi`` (``POST /api/chat/``) do through ``ai.chat.services``, against the same
database and tables (chat_sql.py holds the statements):

- token auth: the host's tenant from the public domain table, then ``Authorization: Token`` to the
  DRF token's active user and their membership of that tenant (once per socket or request);
- the allowance: plan and period read, tokens reserved before the upstream call (the same locking
  statement), the reservation taken off when the usage is recorded;
- the turn stored: conversation, question and the answer's placeholder in one statement;
- the question embedded by Strata's own local model and query batcher (ai.embedding: same ONNX
  model, same batching), started before the database work, then the permission-filtered pgvector
  search in the tenant's schema (k=5, same SQL, same session settings);
- the answer streamed from the Messages API by the anthropic async SDK (aiohttp transport, raw
  events), sent as Strata's frames (start, token..., done | error with ``seq``; SSE events
  ``id``/``event``/``data``);
- settled in one transaction: AgentAction, usage ledger row, period total, reservation, message.

Left out, as Strata's own features rather than the turn's work: the stream log that lets an answer
outlive its connection and be resumed, per-user stream slots and the tenant's share of concurrent
calls, re-authorising before each frame, revocation watching, checkpoints, the per-minute rate
limit (off in the benchmark), two-factor and API-key credentials, history, scopes, regenerate/edit.
Handles a new conversation's first question, which is what the benchmark asks.

Run from the repository root: ``uvicorn chat_app:app --app-dir tests/benchmarks/baselines``, with
BASELINE_DATABASE_URL (``postgresql+asyncpg://user@/db?host=/socket/dir``), ANTHROPIC_BASE_URL,
ANTHROPIC_API_KEY and EMBEDDING_CACHE_DIR (where Strata keeps the ONNX export). Needs the
``baseline`` extra (``pip install -e '.[baseline]'``).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import environ
from chat_sql import Accepted, Asker, QuotaExceeded, asker_of, in_tenant, passages_nearest, turn_accept, turn_settle
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pgvector import Vector
from pgvector.asyncpg import register_vector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ai.embedding.batching import QueryBatcher
from ai.embedding.embedders import WEIGHTS_SHA256, model_folder
from ai.embedding.onnx import onnx_model_load, query_model_load

# Strata's defaults for the same steps (config/settings/ai.py, llm.py, database.py, billing.py).
MODEL = os.environ.get("ANTHROPIC_MODEL", "claude-sonnet-4-6")
CONTEXT_CHUNKS = 5
MAX_DISTANCE = 0.65
CHUNK_TOKENS = 200
MAX_TOKENS = 1024
LEAST_ANSWER_TOKENS = 256
MAX_MESSAGE_CHARS = 8000
RESERVATION_TTL_SECONDS = 600.0
POOL_SIZE = 8  # DB_POOL_MAX_SIZE
SESSION_SETTINGS = {"hnsw.ef_search": "120", "hnsw.iterative_scan": "relaxed_order", "application_name": "baseline"}
UNFINISHED = "The answer did not finish: the server stopped while it was being written."
NO_RELEVANT = "No passage of the organisation's documents is relevant to this question."
CITE = (
    "Each passage in <documents> has an index. When you use a passage, cite it right after the "
    "sentence by its index in square brackets, like [1] or [2]; cite only passages you used."
)
CLOSE_REFUSED = 4403

Frame = dict[str, Any]


class Services:
    engine: AsyncEngine
    llm: anthropic.AsyncAnthropic
    questions: QueryBatcher


services = Services()


def _vector_codec(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.run_async(register_vector)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services.engine = create_async_engine(
        os.environ["BASELINE_DATABASE_URL"],
        pool_size=POOL_SIZE,
        max_overflow=0,
        pool_timeout=10,
        connect_args={"server_settings": SESSION_SETTINGS},
    )
    # pgvector's binary codec on every connection (its documented set-up for SQLAlchemy + asyncpg),
    # as Strata's connections send a question's vector in binary.
    event.listen(services.engine.sync_engine, "connect", _vector_codec)
    services.llm = anthropic.AsyncAnthropic(
        api_key=os.environ["ANTHROPIC_API_KEY"],
        base_url=os.environ.get("ANTHROPIC_BASE_URL"),
        max_retries=2,
        timeout=60.0,
        http_client=anthropic.DefaultAioHttpClient(),
    )
    # The graph Strata embeds questions with (EMBEDDING_QUERY_INT8, read as its settings read it).
    load = query_model_load if environ.Env().bool("EMBEDDING_QUERY_INT8", default=True) else onnx_model_load
    model = load(
        folder=model_folder(), cache_dir=Path(os.environ["EMBEDDING_CACHE_DIR"]), weights_sha256=WEIGHTS_SHA256
    )
    services.questions = QueryBatcher(lambda texts: model.embed(list(texts)).tolist(), max_batch_size=32, max_wait_ms=2)
    services.questions.submit("The baseline warms up its embedding model.").result()
    yield
    await services.llm.close()
    await services.engine.dispose()


app = FastAPI(lifespan=lifespan)


class Refused(Exception):
    """A turn refused or failed with one of Strata's error codes: a JSON 4xx/5xx, or an error frame."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status

    def frame(self) -> Frame:
        return {"type": "error", "error": {"code": self.code, "message": self.message}}


def question_of(payload: Any) -> str:
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, str) or not message.strip():
        raise Refused("bad_request", "'message' must be a non-empty string.", 400)
    if len(message) > MAX_MESSAGE_CHARS:
        raise Refused("message_too_long", f"'message' is longer than {MAX_MESSAGE_CHARS:,} characters.", 413)
    return message.strip()


async def turn_open(asker: Asker, question: str) -> tuple[Accepted, asyncio.Future[list[float]]]:
    """Accept a turn (or refuse it with Refused); the question's embedding runs meanwhile."""
    embedding = asyncio.wrap_future(services.questions.submit(question))
    try:
        async with in_tenant(services.engine, asker.schema_name) as conn:
            accepted = await turn_accept(
                conn,
                asker=asker,
                question=question,
                model=MODEL,
                reserve_chars=CONTEXT_CHUNKS * (CHUNK_TOKENS * 4 + 300),
                max_tokens=MAX_TOKENS,
                least_output=LEAST_ANSWER_TOKENS,
                unfinished=UNFINISHED,
                reservation_ttl=RESERVATION_TTL_SECONDS,
            )
    except BaseException as exc:
        embedding.cancel()  # not computed if it has not started: the batcher skips it
        if isinstance(exc, QuotaExceeded):
            raise Refused("quota_exceeded", str(exc), 402) from exc
        raise
    return accepted, embedding


def prompt_of(question: str, hits: list[Any]) -> str:
    if not hits:
        return f"<documents>\n{NO_RELEVANT}\n</documents>\n\n{question}"
    documents = "\n".join(
        f'<document index="{n}" title="{html.escape(hit.title, quote=True)}" id="{hit.document_id}">'
        f"\n{hit.text}\n</document>"
        for n, hit in enumerate(hits, start=1)
    )
    return f"{CITE}\n\n<documents>\n{documents}\n</documents>\n\n{question}"


def sources_of(hits: list[Any]) -> list[dict[str, Any]]:
    """One source per document, best first, with its passages and their prompt numbers."""
    numbers = {hit.id: n for n, hit in enumerate(hits, start=1)}
    documents: dict[int, list[Any]] = {}
    for hit in hits:
        documents.setdefault(hit.document_id, []).append(hit)
    return [
        {
            "document_id": document_id,
            "title": passages[0].title,
            "chunk_id": passages[0].id,
            "chunk_ids": [passage.id for passage in passages],
            "citations": [numbers[passage.id] for passage in passages],
            "relevance": max(0, min(100, round((MAX_DISTANCE - passages[0].distance) / (MAX_DISTANCE / 2) * 100))),
        }
        for document_id, passages in documents.items()
    ]


async def turn_frames(
    asker: Asker, question: str, accepted: Accepted, embedding: asyncio.Future[list[float]]
) -> AsyncIterator[Frame]:
    """The frames of an accepted turn: start; the passages searched and the answer streamed as
    tokens; the turn settled whatever happened (a client gone away leaves it interrupted); then
    its done or error frame."""
    started = time.perf_counter()
    seq = itertools.count(1)
    yield {
        "type": "start",
        "conversation_id": accepted.conversation_id,
        "message_id": accepted.answer_id,
        "question_id": accepted.question_id,
        "seq": next(seq),
    }
    names = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    usage = dict.fromkeys(names, 0)
    pieces: list[str] = []
    prompt, sources = "", []
    # Until the answer ends one way or another: the client went away (or the server failed) meanwhile.
    status, error, final = "interrupted", "The answer did not finish.", None
    try:
        vector = Vector(await embedding)
        async with in_tenant(services.engine, asker.schema_name) as conn:
            rows = await passages_nearest(conn, asker=asker, vector=vector, k=CONTEXT_CHUNKS)
        hits = [row for row in rows if row.distance <= MAX_DISTANCE]
        prompt, sources = prompt_of(question, hits), sources_of(hits)
        prompt_tokens = (len(accepted.system) + len(prompt) + 2) // 3
        max_tokens = MAX_TOKENS if accepted.grant is None else min(MAX_TOKENS, accepted.grant - prompt_tokens)
        if max_tokens <= 0:
            raise Refused("quota_exceeded", "Not enough tokens left for this question with its passages.", 402)
        finished = False
        stream = await services.llm.messages.create(
            model=MODEL,
            max_tokens=max_tokens,
            system=accepted.system,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        )
        async with stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    pieces.append(event.delta.text)
                    yield {"type": "token", "token": event.delta.text, "seq": next(seq)}
                elif event.type == "message_start":
                    usage |= {name: getattr(event.message.usage, name) or 0 for name in names}
                elif event.type == "message_delta":
                    usage["output_tokens"] = event.usage.output_tokens
                elif event.type == "message_stop":
                    finished = True
        if not finished:
            raise Refused("upstream_incomplete", "The answer was cut off.", 502)
        status, error = "ok", ""
    except Refused as exc:
        status, error, final = "error", exc.message, exc.frame()
    except anthropic.APIError as exc:
        status, error = "error", f"The language model returned an error ({exc!r})."
        final = Refused("upstream_error", "The language model returned an error.", 502).frame()
    finally:
        # Also when the client went away (the generator closed, or its task cancelled, at a yield).
        await asyncio.shield(settle(asker, accepted, prompt, "".join(pieces), usage, status, error, started, sources))
    yield {
        **(
            final
            or {
                "type": "done",
                "done": True,
                "status": status,
                "message_id": accepted.answer_id,
                "conversation_id": accepted.conversation_id,
                "usage": usage,
                "provider": "anthropic",
                "sources": sources,
            }
        ),
        "seq": next(seq),
    }


async def settle(
    asker: Asker,
    accepted: Accepted,
    prompt: str,
    text: str,
    usage: dict[str, int],
    status: str,
    error: str,
    started: float,
    sources: list[dict[str, Any]],
) -> None:
    async with in_tenant(services.engine, asker.schema_name) as conn:
        await turn_settle(
            conn,
            asker=asker,
            accepted=accepted,
            model=MODEL,
            input_prompt=prompt,
            output_text=text,
            usage=usage,
            status=status,
            error=error,
            latency_ms=int((time.perf_counter() - started) * 1000),
            sources=sources,
        )


def _json(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


async def _asker(headers: Any) -> Asker | None:
    return await asker_of(services.engine, host=headers.get("host", ""), authorization=headers.get("authorization", ""))


@app.websocket("/ws/chat/")
async def chat_socket(websocket: WebSocket) -> None:
    """Strata's chat socket: refused at the handshake unless a member; then a question at a time."""
    headers = websocket.headers
    asker = await _asker(headers)
    if asker is None:
        await websocket.close(code=CLOSE_REFUSED)  # before accept: the handshake is refused (HTTP 403)
        return
    await websocket.accept()
    try:
        while True:
            payload = _json(await websocket.receive_text())
            try:
                question = question_of(payload)
                accepted, embedding = await turn_open(asker, question)
            except Refused as exc:
                await websocket.send_text(json.dumps(exc.frame()))
                continue
            async with aclosing(turn_frames(asker, question, accepted, embedding)) as frames:
                async for frame in frames:
                    await websocket.send_text(json.dumps(frame))
    except (WebSocketDisconnect, OSError):
        return  # the client went away; a turn it left was settled as interrupted


@app.post("/api/chat/")
async def chat_sse(request: Request) -> Response:
    """Strata's ``POST /api/chat/``: the turn's frames as server-sent events; refusals are JSON 4xx."""
    headers = request.headers
    asker = await _asker(headers)
    if asker is None:
        return JSONResponse({"error": {"code": "not_authenticated", "message": "Not a member."}}, status_code=401)
    try:
        question = question_of(_json(await request.body()))
        accepted, embedding = await turn_open(asker, question)
    except Refused as exc:
        return JSONResponse({"error": exc.frame()["error"]}, status_code=exc.status)
    return StreamingResponse(
        _events(turn_frames(asker, question, accepted, embedding)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(frames: AsyncIterator[Frame]) -> AsyncIterator[bytes]:
    async with aclosing(frames):
        async for frame in frames:
            yield f"id: {frame['seq']}\nevent: {frame['type']}\ndata: {json.dumps(frame)}\n\n".encode()
