"""The statements kept as plain SQL take their table and column names from the models' ``_meta``:
a renamed column changes them with the model (no database needed to check)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import models
from rest_framework.authtoken.models import Token

from ai.access import Reader
from ai.chat import services as chat
from ai.models import AgentAction, Chunk, Conversation, Document, Message
from ai.selectors import _search_names, _search_sql
from ai.services import actions
from billing.models import AllowanceReservation, Plan, Subscription, TenantUsagePeriod, UsageEvent
from billing.services import reservations, usage
from billing.services.quota import _plan_and_usage_sql
from core.models import User
from tenants.models import ApiKey, Membership, Tenant
from tenants.sockets import _authorised_sql


@contextmanager
def renamed(model: type[models.Model], field_name: str, caches: list[Callable]) -> Iterator[str]:
    field = model._meta.get_field(field_name)
    original = field.column  # type: ignore[union-attr]
    field.column = f"renamed_{field_name}"  # type: ignore[union-attr]
    for cache in caches:
        cache.cache_clear()  # type: ignore[attr-defined]
    try:
        yield f'"renamed_{field_name}"'
    finally:
        field.column = original  # type: ignore[union-attr]
        for cache in caches:
            cache.cache_clear()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "field_name"),
    [
        (Plan, "included_tokens"),
        (Subscription, "tenant"),
        (TenantUsagePeriod, "tokens_used"),
        (TenantUsagePeriod, "period_start"),
    ],
)
def test_the_quota_statement_follows_the_models_columns(model, field_name):
    with renamed(model, field_name, [_plan_and_usage_sql]) as name:
        assert name in _plan_and_usage_sql()


@pytest.mark.parametrize(
    ("model", "field_name"), [(Chunk, "text"), (Chunk, "embedding"), (Chunk, "document"), (Document, "title")]
)
def test_the_knn_statement_follows_the_models_columns(model, field_name):
    with renamed(model, field_name, [_search_names]) as name:
        assert name in _search_sql([0.0, 1.0], k=3, document_ids=[1])[0]


@pytest.mark.parametrize(
    ("model", "field_name"),
    [(Conversation, "user"), (Conversation, "updated"), (Message, "conversation"), (Message, "error")],
)
@pytest.mark.parametrize("new_conversation", [True, False])
def test_the_turn_store_statement_follows_the_models_columns(model, field_name, new_conversation):
    with renamed(model, field_name, [chat._turn_store_sql]) as name:
        assert name in chat._turn_store_sql(new_conversation)


@pytest.mark.parametrize(
    ("model", "field_name"),
    [(Tenant, "status"), (ApiKey, "revoked"), (Membership, "user"), (Token, "key"), (User, "is_active")],
)
@pytest.mark.parametrize("kind", ["api_key", "token", "session"])
def test_the_socket_reauthorisation_statement_follows_the_models_columns(model, field_name, kind):
    reads = {"api_key": {Tenant, ApiKey, User}, "token": {Tenant, Membership, Token, User}}
    if model not in reads.get(kind, {Tenant, Membership, User}):
        pytest.skip("this credential's statement does not read that table")
    with renamed(model, field_name, [_authorised_sql]) as name:
        assert name in _authorised_sql(kind)


_RESERVATION_SQL = (reservations._RESERVE_SQL, reservations._PERIOD_ENSURE_SQL, reservations._RELEASE_SQL)


@pytest.mark.parametrize(
    ("model", "field_name"),
    [(TenantUsagePeriod, "reserved_tokens"), (TenantUsagePeriod, "tenant"), (AllowanceReservation, "expires_at")],
)
def test_the_reservation_statements_follow_the_models_columns(model, field_name):
    with renamed(model, field_name, [reservations._names]) as name:
        statements = [statement.format(**reservations._names()) for statement in _RESERVATION_SQL]
        assert all(name in statement for statement in statements if model is TenantUsagePeriod)
        assert any(name in statement for statement in statements)


@pytest.mark.parametrize("field_name", ["tenant", "tokens_used", "cost_micros"])
def test_the_period_total_statement_follows_the_models_columns(field_name):
    with renamed(TenantUsagePeriod, field_name, [usage._period_upsert_sql]) as name:
        assert name in usage._period_upsert_sql()


@pytest.mark.parametrize(("model", "field_name"), [(Chunk, "collection"), (Document, "title")])
def test_the_permission_filtered_knn_statement_follows_the_models_columns(model, field_name):
    reader = Reader(tenant_id=1, user_id=2, collection_ids=(3,))
    with renamed(model, field_name, [_search_names]) as name:
        assert name in _search_sql([0.0, 1.0], k=3, document_ids=None, reader=reader)[0]


@pytest.mark.parametrize(
    ("model", "field_name", "statement"),
    [
        (AgentAction, "output_text", lambda: actions._inserted().sql),
        (UsageEvent, "request_key", lambda: usage._inserted().sql),
        (AllowanceReservation, "expires_at", lambda: reservations._reservation_inserted().sql),
        (Message, "agent_action", lambda: chat._answer_settled().sql),
        (Message, "agent_action", lambda: chat._answer_checkpointed().sql),
        (Message, "output_tokens", lambda: chat._answer_checkpointed().sql),
    ],
)
def test_the_statements_writing_an_answers_rows_follow_the_models_columns(model, field_name, statement):
    caches = [actions._inserted, usage._inserted, reservations._reservation_inserted]
    with renamed(model, field_name, [*caches, chat._answer_settled, chat._answer_checkpointed]) as name:
        assert name in statement()
