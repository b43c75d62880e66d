"""Recording every AI call: the AgentAction (tenant schema) and, with it, the usage ledger row (public)."""

from __future__ import annotations

import functools

from django.db import transaction

from ai.llm import Usage
from ai.models import AgentAction, Document
from billing.services import usage_record
from billing.services.reservations import allowance_settle
from core.models import User
from core.platform.sql_names import Inserted
from tenants.models import Tenant
from tenants.selectors import api_key_id_of


# No savepoint of its own (two round trips on every chat answer): inside the caller's transaction a
# failure rolls the whole call back, as billing.services.usage_record's does.
@transaction.atomic(savepoint=False)
def agent_action_record(
    *,
    tenant: Tenant,
    agent_type: str,
    user: User | None,
    provider: str,
    model: str,
    input_prompt: str,
    output_text: str,
    usage: Usage,
    latency_ms: int,
    status: str = AgentAction.Status.OK,
    error: str = "",
    document: Document | None = None,
    conversation_id: int | None = None,
    reservation_id: int | None = None,
) -> AgentAction:
    """Write one AgentAction and its usage event, in the caller's transaction.

    ``tenant`` is the one whose schema the caller is in; its usage row is billed to it.
    Offline answers are no LLM call: their estimated tokens are kept on the action only (their
    ledger row has none and costs nothing). A call a program made with a tenant API key is
    attributed to that key on both rows. The call's allowance reservation (``reservation_id``)
    is settled in the same transaction.
    """
    api_key_id = api_key_id_of(user=user)
    action = _inserted().create(
        agent_type=agent_type,
        user=user,
        api_key_id=api_key_id,
        provider=provider,
        model=model,
        input_prompt=input_prompt,
        output_text=output_text,
        error=error[:2000],
        status=status,
        latency_ms=latency_ms,
        document=document,
        conversation_id=conversation_id,
        **usage.as_dict(),
    )
    usage_record(
        tenant_id=tenant.pk,
        user_id=user.id if user else None,
        api_key_id=api_key_id,
        feature=agent_type,
        model=model,
        usage=usage,
        request_key=f"action:{action.pk}",
        status=status,
        latency_ms=latency_ms,
        # Offline answers are no model call: a ledger row with no tokens and no cost, so that
        # operators see the activity (the action keeps its estimated tokens).
        billable=provider != "offline",
    )
    if provider == "offline":
        return action
    if reservation_id is not None:
        allowance_settle(reservation_id=reservation_id)
    return action


@functools.cache
def _inserted() -> Inserted[AgentAction]:
    return Inserted(AgentAction)
