"""The SQL of the FastAPI baseline's chat turn (chat_app.py): Strata's statements, on SQLAlchemy 2 async.

Each statement is the one Strata runs for the same step, with the table and column names its models
give them (ai.chat.services, ai.selectors, ai.access, billing.services, tenants.sockets). Tenant
tables are unqualified: every tenant transaction starts with ``SET LOCAL search_path`` (``in_tenant``),
the tenant's schema first, then public, as django-tenants sets it for Strata. The public tables of
the handshake are qualified. Binds are ``:name`` (SQLAlchemy's ``text``): casts are ``CAST(...)``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pgvector import Vector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# --- The handshake: the host's tenant (public domain table), then the token's user and membership.

TENANT_BY_HOST = text(
    "SELECT t.id, t.schema_name, t.status FROM public.tenants_domain d"
    " JOIN public.tenants_tenant t ON t.id = d.tenant_id WHERE d.domain = :domain"
)
MEMBER_BY_TOKEN = text(
    "SELECT u.id, m.role FROM public.authtoken_token k"
    " JOIN public.core_user u ON u.id = k.user_id AND u.is_active"
    " JOIN public.tenants_membership m ON m.user_id = u.id AND m.tenant_id = :tenant"
    " WHERE k.key = :key"
)


@dataclass(frozen=True)
class Asker:
    tenant_id: int
    schema_name: str
    user_id: int


async def asker_of(engine: AsyncEngine, *, host: str, authorization: str) -> Asker | None:
    """The member asking, on the host's active tenant, by ``Authorization: Token <key>``; else None."""
    keyword, _, key = authorization.partition(" ")
    domain = host.split(":")[0].lower().removeprefix("www.")
    if keyword != "Token" or not key.strip():
        return None
    async with engine.connect() as conn:
        tenant = (await conn.execute(TENANT_BY_HOST, {"domain": domain})).first()
        if tenant is None or tenant.schema_name == "public" or tenant.status != "active":
            return None
        member = (await conn.execute(MEMBER_BY_TOKEN, {"tenant": tenant.id, "key": key.strip()})).first()
    return Asker(tenant_id=tenant.id, schema_name=tenant.schema_name, user_id=member.id) if member else None


@asynccontextmanager
async def in_tenant(engine: AsyncEngine, schema_name: str) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in a transaction whose search_path is the tenant's schema, then public."""
    async with engine.begin() as conn:
        quoted = schema_name.replace('"', '""')
        await conn.execute(text(f'SET LOCAL search_path TO "{quoted}", public'))
        yield conn


# --- Accepting a turn: the plan and this period's usage, the prompt, the reservation, the rows.

PLAN_AND_USAGE = text(
    "SELECT p.included_tokens, p.hard_limit, p.allowed_models, u.tokens_used, u.reserved_tokens"
    " FROM billing_subscription s JOIN billing_plan p ON p.id = s.plan_id"
    " LEFT JOIN billing_tenantusageperiod u ON u.tenant_id = s.tenant_id AND u.period_start = :period_start"
    " WHERE s.tenant_id = :tenant"
)
PROMPT_ACTIVE = text("SELECT system_prompt FROM ai_prompttemplate WHERE name = 'chat' AND active ORDER BY id LIMIT 1")
RESERVE = text(
    """
    WITH locked AS (
        SELECT tokens_used, reserved_tokens FROM billing_tenantusageperiod
        WHERE tenant_id = :tenant AND period_start = :period_start
        FOR UPDATE
    ), granted AS (
        SELECT LEAST(:want, :included - tokens_used - reserved_tokens) AS tokens FROM locked
        WHERE :included - tokens_used - reserved_tokens >= :least
    ), held AS (
        UPDATE billing_tenantusageperiod SET reserved_tokens = reserved_tokens + (SELECT tokens FROM granted)
        WHERE tenant_id = :tenant AND period_start = :period_start AND EXISTS (SELECT 1 FROM granted)
        RETURNING 1
    )
    INSERT INTO billing_allowancereservation
        (tenant_id, period_start, tokens, feature, model, user_id, api_key_id,
         spent_input_tokens, spent_output_tokens, created, expires_at)
    SELECT :tenant, :period_start, tokens, 'chat', :model, :user, NULL, 0, 0, :now, :expires
    FROM granted WHERE EXISTS (SELECT 1 FROM held)
    RETURNING id, tokens
    """
)
# No hard allowance: nothing is held, but the row still records the call in flight.
RESERVE_UNLIMITED = text(
    "INSERT INTO billing_allowancereservation"
    " (tenant_id, period_start, tokens, feature, model, user_id, api_key_id,"
    "  spent_input_tokens, spent_output_tokens, created, expires_at)"
    " VALUES (:tenant, :period_start, 0, 'chat', :model, :user, NULL, 0, 0, :now, :expires) RETURNING id, NULL"
)
PERIOD_ENSURE = text(
    "INSERT INTO billing_tenantusageperiod (tenant_id, period_start, tokens_used, cost_micros, reserved_tokens)"
    " VALUES (:tenant, :period_start, 0, 0, 0) ON CONFLICT (tenant_id, period_start) DO NOTHING"
)
TURN_STORE = text(
    "WITH conversation AS (INSERT INTO ai_conversation (title, user_id, created, updated)"
    " VALUES (:title, :user, :now, :now) RETURNING id),"
    " question AS (INSERT INTO ai_message"
    " (conversation_id, role, content, status, sources, input_tokens, output_tokens, created)"
    " SELECT id, 'user', :question, 'ok', '[]', 0, 0, :now FROM conversation RETURNING conversation_id, id),"
    " answer AS (INSERT INTO ai_message"
    " (conversation_id, role, content, status, sources, input_tokens, output_tokens, created, error)"
    " SELECT conversation_id, 'assistant', '', 'interrupted', '[]', 0, 0, :now, :unfinished FROM question"
    " RETURNING conversation_id, id)"
    " SELECT answer.conversation_id, question.id AS question_id, answer.id AS answer_id FROM answer, question"
)


class QuotaExceeded(Exception):
    """The plan's allowance cannot hold this turn (Strata's 402 ``quota_exceeded``)."""


@dataclass(frozen=True)
class Accepted:
    system: str
    reservation_id: int
    grant: int | None  # tokens the answer may spend in all; None: no hard allowance
    conversation_id: int
    question_id: int
    answer_id: int


async def turn_accept(
    conn: AsyncConnection,
    *,
    asker: Asker,
    question: str,
    model: str,
    reserve_chars: int,
    max_tokens: int,
    least_output: int,
    unfinished: str,
    reservation_ttl: float,
) -> Accepted:
    """Check the allowance, reserve the turn's tokens, store the question and the answer's
    placeholder: Strata's ``_prepare_in_schema`` for a new conversation."""
    now = dt.datetime.now(dt.UTC)
    start = now.date().replace(day=1)
    plan = (await conn.execute(PLAN_AND_USAGE, {"period_start": start, "tenant": asker.tenant_id})).first()
    included, hard = (plan.included_tokens, plan.hard_limit) if plan else (0, False)
    allowed = (json.loads(plan.allowed_models) if isinstance(plan.allowed_models, str) else plan.allowed_models) or []
    if plan and allowed and model not in allowed:
        raise QuotaExceeded(f"The plan does not include the model {model}.")
    if hard and (plan.tokens_used or 0) >= included:
        raise QuotaExceeded("This organisation has used its tokens for this period.")
    system = (await conn.execute(PROMPT_ACTIVE)).scalar_one()
    prompt_tokens = (len(system) + len(question) + reserve_chars + 2) // 3
    params: dict[str, Any] = {
        "tenant": asker.tenant_id,
        "period_start": start,
        "model": model,
        "user": asker.user_id,
        "now": now,
        "expires": now + dt.timedelta(seconds=reservation_ttl),
    }
    if hard:
        params |= {"want": prompt_tokens + max_tokens, "included": included, "least": prompt_tokens + least_output}
        row = (await conn.execute(RESERVE, params)).first()
        if row is None:  # refused, or the period's first call: make sure its row exists, ask once more
            await conn.execute(PERIOD_ENSURE, {"tenant": asker.tenant_id, "period_start": start})
            row = (await conn.execute(RESERVE, params)).first()
        if row is None:
            raise QuotaExceeded("Not enough tokens left this period for this question.")
    else:
        row = (await conn.execute(RESERVE_UNLIMITED, params)).first()
    stored = (
        await conn.execute(
            TURN_STORE,
            {"title": question[:80], "user": asker.user_id, "now": now, "question": question, "unfinished": unfinished},
        )
    ).one()
    return Accepted(
        system=system,
        reservation_id=row[0],
        grant=row[1],
        conversation_id=stored.conversation_id,
        question_id=stored.question_id,
        answer_id=stored.answer_id,
    )


# --- The passages: kNN over the chunks the asker may read (ai.access's rule inside the statement).

SEARCH = text(
    "SELECT c.id, c.document_id, d.title, c.text, c.embedding <=> CAST(:vector AS vector) AS distance"
    " FROM ai_chunk c JOIN ai_document d ON d.id = c.document_id"
    " WHERE c.embedding IS NOT NULL AND c.collection_id = ANY(ARRAY("
    "SELECT col.id FROM ai_collection col, (SELECT"
    " EXISTS (SELECT 1 FROM tenants_membership m WHERE m.tenant_id = :tenant AND m.user_id = :user"
    " AND m.role IN ('owner', 'admin')) AS admin,"
    " EXISTS (SELECT 1 FROM tenants_membership m WHERE m.tenant_id = :tenant AND m.user_id = :user) AS person,"
    " EXISTS (SELECT 1 FROM tenants_apikey k WHERE k.tenant_id = :tenant AND k.user_id = :user"
    " AND k.revoked IS NULL) AS program,"
    " EXISTS (SELECT 1 FROM ai_collectionmember g WHERE g.user_id = :user) AS granted) who"
    " WHERE who.admin OR ((who.person OR who.program) AND ("
    "EXISTS (SELECT 1 FROM ai_collectionmember g WHERE g.collection_id = col.id AND g.user_id = :user)"
    " OR (col.visibility = 'tenant' AND NOT (who.program AND who.granted))))))"
    " ORDER BY distance LIMIT :k"
)


async def passages_nearest(conn: AsyncConnection, *, asker: Asker, vector: Vector, k: int) -> list[Any]:
    rows = await conn.execute(SEARCH, {"vector": vector, "tenant": asker.tenant_id, "user": asker.user_id, "k": k})
    return sorted(rows.all(), key=lambda row: row.distance)  # relaxed_order: restore the order


# --- Settling: the AgentAction, its usage ledger row and the period total, the reservation taken
# off, and the answer's message; one transaction (Strata's ``_finish`` / ``agent_action_record``).

AGENT_ACTION_INSERT = text(
    "INSERT INTO ai_agentaction (timestamp, agent_type, user_id, api_key_id, status, provider, model,"
    " input_prompt, output_text, error, input_tokens, output_tokens, cache_creation_input_tokens,"
    " cache_read_input_tokens, latency_ms, conversation_id, reviewed, flagged_for_training)"
    " VALUES (:now, 'chat', :user, NULL, :status, 'anthropic', :model, :input_prompt, :output_text, :error,"
    " :input_tokens, :output_tokens, :cache_creation_input_tokens, :cache_read_input_tokens, :latency_ms,"
    " :conversation, false, false) RETURNING id"
)
USAGE_EVENT_INSERT = text(
    "INSERT INTO billing_usageevent (tenant_id, user_id, api_key_id, feature, model, input_tokens, output_tokens,"
    " cache_creation_input_tokens, cache_read_input_tokens, total_tokens, cost_micros, request_key, status,"
    " latency_ms, created, meter_status, meter_attempts, meter_error)"
    " VALUES (:tenant, :user, NULL, 'chat', :model, :input_tokens, :output_tokens, :cache_creation_input_tokens,"
    " :cache_read_input_tokens, :total, :cost, :request_key, :status, :latency_ms, :now, :meter_status, 0, '')"
)
PERIOD_ADD = text(
    "INSERT INTO billing_tenantusageperiod (tenant_id, period_start, tokens_used, cost_micros)"
    " VALUES (:tenant, :period_start, :total, :cost) ON CONFLICT (tenant_id, period_start) DO UPDATE"
    " SET tokens_used = billing_tenantusageperiod.tokens_used + EXCLUDED.tokens_used,"
    " cost_micros = billing_tenantusageperiod.cost_micros + EXCLUDED.cost_micros"
)
RELEASE = text(
    "WITH released AS (DELETE FROM billing_allowancereservation WHERE id = :reservation"
    " RETURNING tenant_id, period_start, tokens)"
    " UPDATE billing_tenantusageperiod AS period"
    " SET reserved_tokens = GREATEST(period.reserved_tokens - released.tokens, 0)"
    " FROM released WHERE period.tenant_id = released.tenant_id AND period.period_start = released.period_start"
)
MESSAGE_SETTLE = text(
    "UPDATE ai_message SET content = :output_text, status = :status, error = :error, sources = CAST(:sources AS jsonb),"
    " input_tokens = :message_input_tokens, output_tokens = :output_tokens, agent_action_id = :action WHERE id = :id"
)

# US dollars per million tokens, i.e. micro-dollars per token (Strata's MODEL_PRICES for its default model).
PRICES = {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.30}


async def turn_settle(
    conn: AsyncConnection,
    *,
    asker: Asker,
    accepted: Accepted,
    model: str,
    input_prompt: str,
    output_text: str,
    usage: dict[str, int],
    status: str,
    error: str,
    latency_ms: int,
    sources: list[dict[str, Any]],
) -> None:
    now = dt.datetime.now(dt.UTC)
    total = sum(usage.values())
    cost = round(
        usage["input_tokens"] * PRICES["input"]
        + usage["output_tokens"] * PRICES["output"]
        + usage["cache_creation_input_tokens"] * PRICES["cache_write"]
        + usage["cache_read_input_tokens"] * PRICES["cache_read"]
    )
    common = {"user": asker.user_id, "model": model, "status": status, "latency_ms": latency_ms, "now": now, **usage}
    action = (
        await conn.execute(
            AGENT_ACTION_INSERT,
            {
                **common,
                "input_prompt": input_prompt,
                "output_text": output_text,
                "error": error[:2000],
                "conversation": accepted.conversation_id,
            },
        )
    ).scalar_one()
    await conn.execute(
        USAGE_EVENT_INSERT,
        {
            **common,
            "tenant": asker.tenant_id,
            "total": total,
            "cost": cost,
            "request_key": f"action:{action}",
            "meter_status": "pending" if total else "skipped",
        },
    )
    period = {"tenant": asker.tenant_id, "period_start": now.date().replace(day=1), "total": total, "cost": cost}
    await conn.execute(PERIOD_ADD, period)
    await conn.execute(RELEASE, {"reservation": accepted.reservation_id})
    await conn.execute(
        MESSAGE_SETTLE,
        {
            "output_text": output_text,
            "status": status,
            "error": error,
            "sources": json.dumps(sources),
            "message_input_tokens": usage["input_tokens"]
            + usage["cache_creation_input_tokens"]
            + usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
            "action": action,
            "id": accepted.answer_id,
        },
    )
