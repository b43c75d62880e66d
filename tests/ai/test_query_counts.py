"""Query counts of the chat hot path, pinned Zulip-style: a change that adds a query to every turn
(or every client frame) fails here and says so, instead of showing up later as latency.

Each count is the statements of one step once its connection is warm; the comments list them.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django_tenants.utils import tenant_context
from rest_framework.authtoken.models import Token

from ai.chat.services import NO_PROMPT, ChatTurn, _finish, _prepare
from ai.llm import LLMStream, Usage
from ai.models import Message
from billing.models import TenantUsagePeriod
from core.models import User
from tenants.mfa.services import mfa_required_by
from tenants.selectors import api_key_id_of
from tenants.services.api_keys import api_key_create
from tenants.sockets import connection_authorised, resolve_connection

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_passages(settings):  # noqa: ANN001
    """The turn's own statements, counted without passages (the kNN search is one more, bench_search's)."""
    settings.CHAT_CONTEXT_CHUNKS = 0


def _member(world) -> User:  # noqa: ANN001
    """The member's row as a request or a socket loads it (the world's own caches what earlier tests read)."""
    return User.objects.get(pk=world.member.pk)


def _turn(world, user: User | None = None, *, conversation_id: int | None = None) -> ChatTurn:  # noqa: ANN001
    turn = _prepare(
        tenant=world.tenant,
        user=user or _member(world),
        message="What is on the menu?",
        conversation_id=conversation_id,
    )
    connection.set_schema_to_public()
    return turn


def _warm(world) -> None:  # noqa: ANN001
    """The first turn of a process reads the prompt and caches SQL; count the turns after it."""
    _turn(world).slot.release()


@pytest.mark.parametrize("model", ["offline", "anthropic"])
def test_a_chat_turn_is_accepted_in_a_fixed_number_of_queries(acme, request, django_assert_num_queries, model):
    if model == "anthropic":
        request.getfixturevalue("fake_anthropic")
    _warm(acme)
    user = _member(acme)
    # The search_path, quota_check (the plan and the period's total), the active prompt, the turn
    # store; with a model also the asker's API key (none: a person) and the reservation.
    expected = {"offline": 4, "anthropic": 6}[model]

    with django_assert_num_queries(expected):
        turn = _turn(acme, user)

    turn.slot.release()


def test_a_turn_in_a_long_conversation_costs_one_more_query_whatever_its_length(acme, django_assert_num_queries):
    _warm(acme)
    first = _turn(acme)
    first.slot.release()
    for _ in range(5):
        _turn(acme, conversation_id=first.conversation_id).slot.release()

    user = _member(acme)
    # Plus the conversation and its history: 2.
    with django_assert_num_queries(6):
        turn = _turn(acme, user, conversation_id=first.conversation_id)

    turn.slot.release()


def _handshake(world, token: str, host: str | None = None) -> dict:  # noqa: ANN001
    headers = [(b"host", (host or world.host).encode()), (b"authorization", f"Token {token}".encode())]
    return resolve_connection({"headers": headers})


def test_a_members_websocket_handshake_with_a_login_token_is_one_statement(acme, django_assert_num_queries):
    _handshake(acme, acme.member_token)  # the first reads the session settings and builds the SQL
    connection.search_path_set_schemas = None  # as on a connection fresh from the pool

    # The domain with its tenant and two-factor policy, the token's user with their membership and
    # API key, in schema-qualified SQL: no search_path to set.
    with django_assert_num_queries(1):
        resolved = _handshake(acme, acme.member_token)

    assert resolved["tenant"] == acme.tenant
    assert resolved["user"] == resolved["membership"].user == acme.member
    assert resolved["membership"].tenant == acme.tenant and resolved["membership"].role == "member"
    # What the turn reads of them later costs nothing more: the policy, and the asker's API key (none).
    with django_assert_num_queries(0):
        assert not mfa_required_by(tenant=resolved["tenant"])
        assert api_key_id_of(user=resolved["user"]) is None
    assert not connection.search_path_set_schemas  # the next ordinary cursor sets the borrower's path


def test_a_handshake_with_a_token_of_no_member_or_no_token_finds_no_membership(acme, globex, django_assert_num_queries):
    _handshake(acme, acme.member_token)
    with django_assert_num_queries(1):
        outsider = _handshake(acme, globex.member_token)  # a person, but not of this tenant
    assert outsider["tenant"] == acme.tenant and outsider["user"] == globex.member
    assert outsider["membership"] is None

    with django_assert_num_queries(1):
        unknown = _handshake(acme, "0" * 40)
    assert unknown["tenant"] == acme.tenant and not unknown["user"].is_authenticated
    assert unknown["membership"] is None

    with django_assert_num_queries(1):
        nowhere = _handshake(acme, acme.member_token, host="nowhere.localhost")
    assert nowhere["tenant"] is None and nowhere["membership"] is None


def test_a_turn_asked_through_a_socket_reads_no_api_key(acme, fake_anthropic, django_assert_num_queries):
    _warm(acme)
    user = _handshake(acme, acme.member_token)["user"]
    with django_assert_num_queries(5):  # as above with a model, less the API key the handshake read
        _turn(acme, user).slot.release()


def test_the_socket_reauthorisation_is_one_query_for_a_token_or_a_key(acme, django_assert_num_queries):
    token = Token.objects.get_or_create(user=acme.member)[0].key
    key, _ = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="bot", scope="read")

    connection.search_path_set_schemas = None  # as on a connection fresh from the pool: schema-qualified SQL needs none
    with django_assert_num_queries(1):
        assert connection_authorised(tenant=acme.tenant, user_id=acme.member.pk, credential=("token", token))
    with django_assert_num_queries(1):
        assert connection_authorised(tenant=acme.tenant, user_id=key.user_id, credential=("api_key", str(key.pk)))


def test_the_socket_reauthorisation_of_a_session_reads_the_session_too(acme, django_assert_num_queries):
    session_key = acme.session_client(acme.member).cookies["sessionid"].value
    credential = ("session", session_key)
    assert connection_authorised(tenant=acme.tenant, user_id=acme.member.pk, credential=credential)

    # The one statement (schema-qualified); then in the tenant's schema (sessions live there) the
    # search_path, the session and its user (a changed password ends it): 4.
    with django_assert_num_queries(4):
        assert connection_authorised(tenant=acme.tenant, user_id=acme.member.pk, credential=credential)


@pytest.mark.parametrize("model", ["offline", "anthropic"])
def test_an_answer_is_settled_in_a_fixed_number_of_queries(acme, request, django_assert_num_queries, model):
    if model == "anthropic":
        request.getfixturevalue("fake_anthropic")
    _warm(acme)
    turn = _turn(acme)
    turn.slot.release()
    stream = LLMStream(model=turn.provider.model)
    stream.text, stream.usage = "Soup.", Usage(input_tokens=40, output_tokens=3)

    # search_path, the transaction (2 here: a savepoint and its release inside the test's own), the
    # AgentAction (no savepoint of its own), the Message, and the asker's API key (none: a person),
    # which a model turn already read when it reserved its allowance; then the ledger row, the period
    # total and the reservation's release (an offline answer's row has no tokens and costs nothing,
    # so operators see the activity).
    expected = {"offline": 8, "anthropic": 8}[model]
    with django_assert_num_queries(expected):
        _finish(
            turn=turn, prompt=NO_PROMPT, stream=stream, status=Message.Status.OK, error="", started=time.perf_counter()
        )

    with tenant_context(acme.tenant):
        assert Message.objects.get(id=turn.message_id).content == "Soup."
    if model == "anthropic":
        assert TenantUsagePeriod.objects.for_tenant(acme.tenant).get().tokens_used == 43
