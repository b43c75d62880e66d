import pytest
from django_tenants.utils import tenant_context

from ai.chat.services import _turn_store
from ai.models import Conversation, Message
from core.platform.exceptions import ApplicationError


def make_conversation(world, user, turns=1):
    with tenant_context(world.tenant):
        conversation = Conversation.objects.create(user=user, title="Budget")
        for i in range(turns):
            Message.objects.create(conversation=conversation, role="user", content=f"question {i}")
            Message.objects.create(
                conversation=conversation,
                role="assistant",
                content=f"answer {i}",
                sources=[{"document_id": 1, "chunk_id": 2, "title": "Plan"}],
            )
        return conversation


def test_a_member_lists_and_reads_their_conversations(acme, new_member):
    user, token = new_member(acme)
    conversation = make_conversation(acme, user, turns=2)
    client = acme.client(token)

    listing = client.get("/api/conversations/").json()
    detail = client.get(f"/api/conversations/{conversation.id}/").json()

    assert [c["id"] for c in listing["results"]] == [conversation.id]
    assert [m["content"] for m in detail["messages"]] == ["question 0", "answer 0", "question 1", "answer 1"]
    assert detail["messages"][1]["sources"][0]["title"] == "Plan"


def test_a_member_creates_an_empty_conversation(acme):
    response = acme.client(acme.member_token).post("/api/conversations/", {"title": "New topic"}, format="json")

    assert response.status_code == 201
    assert response.json()["title"] == "New topic"


def test_other_members_conversations_are_invisible(acme, globex, new_member):
    owners = make_conversation(acme, acme.owner)
    _, token = new_member(acme)

    assert acme.client(token).get(f"/api/conversations/{owners.id}/").status_code == 404
    assert acme.client(token).get("/api/conversations/").json()["count"] == 0
    assert globex.client(globex.owner_token).get(f"/api/conversations/{owners.id}/").status_code in (403, 404)


@pytest.mark.parametrize("turns", [1, 10])
def test_reading_a_conversation_takes_a_constant_number_of_queries(acme, django_assert_num_queries, turns):
    conversation = make_conversation(acme, acme.member, turns=turns)
    client = acme.client(acme.member_token)

    # tenant, token+user+membership (schema-qualified, no search_path: tenants.credentials), the
    # tenant's SET search_path, conversation, its messages, and which cited documents the reader can
    # no longer read (one query, however many)
    with django_assert_num_queries(6):
        assert client.get(f"/api/conversations/{conversation.id}/").status_code == 200


def test_a_turn_is_stored_in_order_and_never_into_a_conversation_gone_or_not_the_askers(acme):
    conversation = make_conversation(acme, acme.member)
    with tenant_context(acme.tenant):
        conversation_id, question_id, answer_id = _turn_store(
            user=acme.member, conversation_id=conversation.id, question="next"
        )
        stored = list(Message.objects.filter(conversation_id=conversation.id).values_list("id", "role", "status"))
        assert conversation_id == conversation.id and stored[-1] == (answer_id, "assistant", "interrupted")
        assert stored[-2] == (question_id, "user", "ok") and question_id < answer_id

        with pytest.raises(ApplicationError) as other:  # someone else's conversation: nothing stored
            _turn_store(user=acme.owner, conversation_id=conversation.id, question="mine?")
        Conversation.objects.filter(id=conversation.id).delete()  # deleted after it was read
        with pytest.raises(ApplicationError) as gone:
            _turn_store(user=acme.member, conversation_id=conversation.id, question="still there?")

        assert other.value.code == gone.value.code == "conversation_not_found"
        assert not Message.objects.filter(conversation_id=conversation.id).exists()
