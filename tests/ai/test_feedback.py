"""Feedback from the people asking: thumbs up or down with a comment on an answer (API and chat
page), landing on the answer's AgentAction and in the admin's "thumbs down, not reviewed" queue."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from ai.models import AgentAction, Conversation, Message
from tests.ai.factories import AgentActionFactory
from tests.ai.test_agent_review_list import listed_ids


def answered(world, user, *, finished: bool = True) -> tuple[Conversation, Message, AgentAction | None]:  # noqa: ANN001
    with tenant_context(world.tenant):
        conversation = Conversation.objects.create(user=user, title="Parking")
        Message.objects.create(conversation=conversation, role="user", content="Where do I park?")
        action = AgentActionFactory(agent_type="chat", user=user, conversation=conversation) if finished else None
        answer = Message.objects.create(
            conversation=conversation, role="assistant", content="Level -2.", agent_action=action
        )
    return conversation, answer, action


def url(conversation: Conversation, message: Message) -> str:
    return f"/api/conversations/{conversation.id}/messages/{message.id}/feedback/"


def test_thumbs_down_with_a_comment_lands_on_the_action_and_in_the_review_queue(acme):
    conversation, answer, action = answered(acme, acme.member)
    with tenant_context(acme.tenant):
        liked = AgentActionFactory(feedback="up")
        reviewed = AgentActionFactory(feedback="down", reviewed=True)

    response = acme.client(acme.member_token).post(
        url(conversation, answer), {"rating": "down", "comment": "  It is level -3 now. "}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"message_id": answer.id, "rating": "down", "comment": "It is level -3 now."}
    with tenant_context(acme.tenant):
        action.refresh_from_db()
    assert (action.feedback, action.feedback_comment, action.feedback_by_id) == (
        "down",
        "It is level -3 now.",
        acme.member.id,
    )
    assert action.feedback_at is not None
    queue = acme.session_client(acme.owner).get("/admin/ai/agentaction/", {"feedback": "down_unreviewed"})
    assert listed_ids(queue) == [action.id]
    assert liked.id not in listed_ids(queue) and reviewed.id not in listed_ids(queue)


def test_a_second_rating_replaces_the_first(acme):
    conversation, answer, action = answered(acme, acme.member)
    client = acme.client(acme.member_token)

    client.post(url(conversation, answer), {"rating": "down", "comment": "wrong"}, format="json")
    client.post(url(conversation, answer), {"rating": "up"}, format="json")

    with tenant_context(acme.tenant):
        action.refresh_from_db()
    assert (action.feedback, action.feedback_comment) == ("up", "")


@pytest.mark.parametrize(
    ("who", "body", "status", "code"),
    [
        ("owner", {"rating": "down"}, 404, "not_found"),  # someone else's conversation
        ("member", {"rating": "meh"}, 400, None),
        ("member", {"rating": "up", "comment": "x" * 2001}, 400, None),
    ],
)
def test_feedback_is_refused_for_others_conversations_and_bad_input(acme, who, body, status, code):
    conversation, answer, action = answered(acme, acme.member)
    token = acme.owner_token if who == "owner" else acme.member_token

    response = acme.client(token).post(url(conversation, answer), body, format="json")

    assert response.status_code == status
    if code:
        assert response.json()["error"]["code"] == code
    with tenant_context(acme.tenant):
        action.refresh_from_db()
    assert action.feedback == ""


def test_an_unfinished_answer_cannot_be_rated_yet(acme):
    conversation, answer, _ = answered(acme, acme.member, finished=False)

    response = acme.client(acme.member_token).post(url(conversation, answer), {"rating": "up"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_finished"


def test_a_question_cannot_be_rated(acme):
    conversation, answer, _ = answered(acme, acme.member)
    with tenant_context(acme.tenant):
        question = Message.objects.get(conversation=conversation, role="user")

    response = acme.client(acme.member_token).post(url(conversation, question), {"rating": "up"}, format="json")

    assert response.status_code == 404


def test_the_chat_page_offers_feedback_on_each_answer_showing_the_rating_given(acme):
    conversation, answer, action = answered(acme, acme.member)
    with tenant_context(acme.tenant):
        AgentAction.objects.filter(pk=action.pk).update(feedback="up", feedback_comment="Spot on")

    page = acme.session_client(acme.member).get(f"/chat/{conversation.id}/").content.decode()

    assert f'data-feedback-url="{url(conversation, answer)}"' in page
    assert 'data-rating="up" aria-pressed="true"' in page
    assert 'data-rating="down" aria-pressed="false"' in page
    assert 'value="Spot on"' in page
    assert page.count('class="feedback row"') == 1  # answers only, not questions
