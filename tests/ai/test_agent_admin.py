"""The tenant admin's review of AI actions: columns, filters, read-only records, review actions."""

from __future__ import annotations

import re

import pytest
from django_tenants.utils import tenant_context

from ai.models import AgentAction
from tests.ai.factories import AgentActionFactory

CHANGELIST = "/admin/ai/agentaction/"


@pytest.fixture
def recorded(acme) -> dict[str, AgentAction]:  # noqa: ANN001
    with tenant_context(acme.tenant):
        return {
            "summary": AgentActionFactory(
                user=acme.member, input_prompt="Summarise the board minutes", input_tokens=120, output_tokens=30
            ),
            "chat": AgentActionFactory(
                agent_type="chat",
                user=acme.owner,
                input_prompt="Where is the parking?",
                input_tokens=50,
                output_tokens=7,
            ),
            "failed": AgentActionFactory(
                status="error",
                user=acme.member,
                input_prompt="Summarise the roadmap",
                input_tokens=0,
                output_tokens=0,
                error="Overloaded",
            ),
        }


def listed_ids(response) -> set[int]:  # noqa: ANN001
    return {int(value) for value in re.findall(r'name="_selected_action" value="(\d+)"', response.content.decode())}


def column_headers(response) -> list[str]:  # noqa: ANN001
    head = response.content.decode().split("<thead>", 1)[1].split("</thead>", 1)[0]
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<th[^>]*>(.*?)</th>", head, flags=re.S)]


def test_the_changelist_shows_who_did_what_and_how_many_tokens(acme, recorded):
    response = acme.session_client(acme.owner).get(CHANGELIST)

    assert response.status_code == 200
    headers = column_headers(response)
    for column in ("Timestamp", "Agent type", "User", "Status", "Tokens"):
        assert column in headers, headers
    assert listed_ids(response) == {action.id for action in recorded.values()}
    page = response.content.decode()
    assert '<td class="field-token_count">150</td>' in page
    assert acme.member.email in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("agent_type__exact=chat", {"chat"}),
        ("agent_type__exact=summarise", {"summary", "failed"}),
        ("status__exact=error", {"failed"}),
        ("status__exact=ok", {"summary", "chat"}),
    ],
)
def test_the_changelist_filters_by_agent_type_and_status(acme, recorded, query, expected):
    response = acme.session_client(acme.owner).get(f"{CHANGELIST}?{query}")

    assert response.status_code == 200
    assert listed_ids(response) == {recorded[name].id for name in expected}


def test_prompt_output_and_tokens_are_read_only(acme, recorded):
    action = recorded["summary"]
    original = (action.input_prompt, action.output_text, action.input_tokens, action.output_tokens)
    client = acme.session_client(acme.owner)
    page = client.get(f"{CHANGELIST}{action.id}/change/").content.decode()

    assert "Summarise the board minutes" in page
    for field in ("input_prompt", "output_text", "input_tokens", "output_tokens", "status", "agent_type"):
        assert f'name="{field}"' not in page, field
    assert 'name="reviewed"' in page

    client.post(
        f"{CHANGELIST}{action.id}/change/",
        {
            "input_prompt": "rewritten",
            "output_text": "rewritten",
            "input_tokens": 1,
            "output_tokens": 1,
            "reviewed": "on",
        },
    )

    with tenant_context(acme.tenant):
        action.refresh_from_db()
    assert (action.input_prompt, action.output_text, action.input_tokens, action.output_tokens) == original
    assert action.reviewed


def test_nobody_adds_agent_actions_by_hand(acme, recorded):
    assert acme.session_client(acme.owner).get(f"{CHANGELIST}add/").status_code == 403


@pytest.mark.parametrize(
    ("action_name", "flag"), [("mark_reviewed", "reviewed"), ("flag_for_training", "flagged_for_training")]
)
def test_the_review_actions_flag_the_selected_actions_only(acme, recorded, action_name, flag):
    chosen = [recorded["summary"].id, recorded["failed"].id]

    response = acme.session_client(acme.owner).post(
        CHANGELIST, {"action": action_name, "_selected_action": chosen, "index": 0}, follow=True
    )

    assert response.status_code == 200
    assert "2 action(s)" in response.content.decode()
    with tenant_context(acme.tenant):
        flagged = set(AgentAction.objects.filter(**{flag: True}).values_list("id", flat=True))
    assert flagged == set(chosen)


def test_members_cannot_open_the_agent_action_admin(acme, recorded):
    response = acme.session_client(acme.member).get(CHANGELIST)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_another_tenants_actions_stay_out_of_the_admin(acme, globex, recorded):
    with tenant_context(globex.tenant):
        other = AgentActionFactory(user=globex.owner, input_prompt="Globex confidential prompt")

    page = acme.session_client(acme.owner).get(CHANGELIST)
    review = acme.session_client(acme.owner).post(
        CHANGELIST, {"action": "mark_reviewed", "_selected_action": [other.id]}, follow=True
    )

    assert "Globex confidential prompt" not in page.content.decode()
    assert review.status_code == 200
    with tenant_context(globex.tenant):
        other.refresh_from_db()
    assert not other.reviewed
