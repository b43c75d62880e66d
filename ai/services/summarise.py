"""Summaries: one call for a short document, map-reduce for a long one, extractive when offline."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from django.conf import settings
from django.db import connection

from ai.chat.stream_slots import stream_slot
from ai.embedding.embedders import get_embedder
from ai.llm import LLMProvider, Usage, estimate_tokens, get_llm_provider
from ai.models import AgentAction, Document
from ai.services.actions import agent_action_record
from ai.services.prompts import prompt_active
from billing.services import quota_check
from billing.services.reservations import allowance_reserve, reserve_tokens_estimate
from core.models import User
from core.platform.admission import Admission, connections_release, tenant_slot
from core.platform.exceptions import ApplicationError
from tenants.models import Tenant
from tenants.selectors import api_key_id_of

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
EXTRACTIVE_SENTENCES = 5
EXTRACTIVE_MAX_SENTENCES_READ = 600


@dataclass
class SummaryResult:
    summary: str
    usage: Usage
    provider: str
    model: str


# The shortest summary worth asking a model for: a call whose reservation leaves less is refused.
SUMMARY_MIN_OUTPUT_TOKENS = 64


def document_summarise(*, user: User, document: Document) -> SummaryResult:
    """Summarise ``document``; every model call is recorded as an AgentAction and a usage event.

    A model summary is admitted first (one of the asker's and one of the tenant's concurrent
    slots, or 429) and every call reserves its allowance before it starts; no pooled database
    connection is held while the model works."""
    # The request's tenant: django-tenants puts it on the connection with the request's schema.
    tenant: Tenant = cast(Any, connection).tenant
    provider = get_llm_provider()
    allowance = quota_check(tenant=tenant, feature=AgentAction.AgentType.SUMMARISE, model=provider.model)
    if provider.name == "offline":
        return _summarise_extractive(tenant=tenant, user=user, document=document)
    admission = Admission(
        stream_slot(schema_name=tenant.schema_name, user_id=user.pk),
        tenant_slot(schema_name=tenant.schema_name, limit=allowance.concurrent_requests),
    )
    admission.acquire()
    try:
        return _summarise_with_model(
            tenant=tenant, provider=provider, user=user, document=document, admission=admission
        )
    finally:
        admission.release()


def _sections(text: str, budget_tokens: int) -> list[str]:
    """Split on paragraph boundaries into pieces of at most ``budget_tokens`` (estimated)."""
    budget_chars = budget_tokens * 4
    sections: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        while len(paragraph) > budget_chars:  # a single giant paragraph is cut hard
            if current:
                sections.append(current)
                current = ""
            sections.append(paragraph[:budget_chars])
            paragraph = paragraph[budget_chars:]
        if current and len(current) + len(paragraph) + 2 > budget_chars:
            sections.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current.strip():
        sections.append(current)
    return sections


def _groups(summaries: list[str], budget_tokens: int) -> list[str]:
    """Pack whole section summaries into groups that fit ``budget_tokens`` (estimated), at least two
    to a group: cutting summaries to fit could give more groups than inputs and never converge, so a
    group outgrows the budget only when two summaries alone do."""
    budget_chars = budget_tokens * 4
    groups: list[list[str]] = []
    size = 0
    for summary in summaries:
        if groups and (len(groups[-1]) < 2 or size + 2 + len(summary) <= budget_chars):
            groups[-1].append(summary)
            size += 2 + len(summary)
        else:
            groups.append([summary])
            size = len(summary)
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2].extend(groups.pop())
    return ["\n\n".join(group) for group in groups]


def _summarise_with_model(
    *, tenant: Tenant, provider: LLMProvider, user: User, document: Document, admission: Admission
) -> SummaryResult:
    total = Usage()
    try:
        summary = _map_reduce(
            tenant=tenant, provider=provider, user=user, document=document, total=total, admission=admission
        )
    except ApplicationError as exc:
        if exc.code == "quota_exceeded":
            # Every call made so far is recorded (AgentAction + usage); say so, and what it cost.
            exc.message = f"{exc.message} The summary stopped part-way; the tokens it used are counted."
            exc.extra["usage"] = total.as_dict()
        raise
    return SummaryResult(summary=summary, usage=total, provider=provider.name, model=provider.model)


def _map_reduce(
    *, tenant: Tenant, provider: LLMProvider, user: User, document: Document, total: Usage, admission: Admission
) -> str:
    budget = settings.SUMMARY_CONTEXT_TOKENS
    sections = _sections(document.content, budget)
    title = html.escape(document.title, quote=True)
    summaries = [
        _call(
            provider,
            user,
            document,
            tenant=tenant,
            prompt_name="summarise",
            text=f'<document title="{title}">\n{section}\n</document>',
            total=total,
            admission=admission,
        )
        for section in sections
    ]
    # Reduce until one summary is left; every round has fewer inputs than the last.
    while len(summaries) > 1:
        groups = _groups(summaries, budget)
        summaries = [
            _call(
                provider,
                user,
                document,
                tenant=tenant,
                prompt_name="summarise_reduce",
                text=f'<section_summaries title="{title}">\n{group}\n</section_summaries>',
                total=total,
                admission=admission,
            )
            for group in groups
        ]
    return summaries[0]


def _call(
    provider: LLMProvider,
    user: User,
    document: Document,
    *,
    tenant: Tenant,
    prompt_name: str,
    text: str,
    total: Usage,
    admission: Admission,
) -> str:
    # Before every upstream call: a long document's sections must not run past the allowance, so
    # each reserves what it may spend (its input and at most SUMMARY_MAX_TOKENS) or is refused.
    # The request itself was counted against the rate limit by document_summarise.
    allowance = quota_check(
        tenant=tenant, feature=AgentAction.AgentType.SUMMARISE, model=provider.model, count_request=False
    )
    system = prompt_active(name=prompt_name).system_prompt
    messages = [{"role": "user", "content": text}]
    prompt_tokens = reserve_tokens_estimate(len(system) + len(text))
    reservation = allowance_reserve(
        tenant=tenant,
        allowance=allowance,
        feature=AgentAction.AgentType.SUMMARISE,
        model=provider.model,
        prompt_tokens=prompt_tokens,
        max_tokens=settings.SUMMARY_MAX_TOKENS,
        least_output=SUMMARY_MIN_OUTPUT_TOKENS,
        user_id=user.pk,
        api_key_id=api_key_id_of(user=user),
    )
    max_tokens = reservation.max_output(prompt_tokens=prompt_tokens, limit=settings.SUMMARY_MAX_TOKENS)
    admission.refresh()
    connections_release()  # the model takes seconds: no pooled connection waits with it
    started = time.perf_counter()
    try:
        completion = provider.complete(system=system, messages=messages, max_tokens=max_tokens)
    except ApplicationError as exc:
        agent_action_record(
            tenant=tenant,
            agent_type=AgentAction.AgentType.SUMMARISE,
            user=user,
            provider=provider.name,
            model=provider.model,
            input_prompt=text,
            output_text="",
            usage=Usage(),
            latency_ms=_ms(started),
            status=AgentAction.Status.ERROR,
            error=exc.message,
            document=document,
            reservation_id=reservation.id,
        )
        raise
    agent_action_record(
        tenant=tenant,
        agent_type=AgentAction.AgentType.SUMMARISE,
        user=user,
        provider=provider.name,
        model=completion.model,
        input_prompt=text,
        output_text=completion.text,
        usage=completion.usage,
        latency_ms=_ms(started),
        document=document,
        reservation_id=reservation.id,
    )
    total.add(completion.usage)
    return completion.text


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _sentences(text: str) -> list[str]:
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if len(s.strip()) > 20]
    return sentences[:EXTRACTIVE_MAX_SENTENCES_READ]


def _summarise_extractive(*, tenant: Tenant, user: User, document: Document) -> SummaryResult:
    """No model configured: the sentences nearest the document's centroid, in document order."""
    started = time.perf_counter()
    sentences = _sentences(document.content) or [document.content.strip()[:1000]]
    if len(sentences) <= EXTRACTIVE_SENTENCES:
        chosen = sentences
    else:
        vectors = np.asarray(get_embedder().embed_documents(sentences))
        centroid = vectors.mean(axis=0)
        scores = vectors @ (centroid / np.linalg.norm(centroid))
        keep = sorted(np.argsort(-scores)[:EXTRACTIVE_SENTENCES].tolist())
        chosen = [sentences[i] for i in keep]
    summary = " ".join(chosen)
    usage = Usage(input_tokens=estimate_tokens(document.content), output_tokens=estimate_tokens(summary))
    agent_action_record(
        tenant=tenant,
        agent_type=AgentAction.AgentType.SUMMARISE,
        user=user,
        provider="offline",
        model="offline",
        input_prompt=document.content[:10_000],
        output_text=summary,
        usage=usage,
        latency_ms=_ms(started),
        document=document,
    )
    return SummaryResult(summary=summary, usage=usage, provider="offline", model="offline")
