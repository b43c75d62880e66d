"""Finding and pinning conversations through the API: search by title and message text, only the
asker's own conversations in this tenant, pinned ones first."""

from django_tenants.utils import tenant_context

from ai.models import Conversation, Message


def conversation(world, user, title, *texts):
    with tenant_context(world.tenant):
        made = Conversation.objects.create(user=user, title=title)
        for i, text in enumerate(texts):
            Message.objects.create(conversation=made, role="user" if i % 2 == 0 else "assistant", content=text)
        return made


def ids(response):
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


def test_search_finds_the_askers_conversations_by_title_and_by_message_text(acme, globex, new_member):
    user, token = new_member(acme)
    by_title = conversation(acme, user, "Holiday allowance", "How many days?", "Twenty-five.")
    by_answer = conversation(acme, user, "Leave", "Can I carry days over?", "Up to five HOLIDAY days carry over.")
    conversation(acme, user, "Parking", "Where do I park?", "In the car park.")
    conversation(acme, acme.member, "Holiday plans", "Holiday?", "Yes.")  # someone else's
    conversation(globex, globex.member, "Holiday rota", "Holiday?", "Yes.")  # another tenant's
    client = acme.client(token)

    found = ids(client.get("/api/conversations/", {"q": "holiday"}))

    assert sorted(found) == sorted([by_title.id, by_answer.id])
    assert ids(client.get("/api/conversations/", {"q": "car park"})) != []
    assert ids(client.get("/api/conversations/", {"q": "nothing like this"})) == []
    assert len(ids(client.get("/api/conversations/", {"q": "  "}))) == 3  # blank: everything


def test_pinned_conversations_come_first_and_pinning_does_not_reorder_by_date(acme, new_member):
    user, token = new_member(acme)
    older = conversation(acme, user, "Older", "a?")
    newer = conversation(acme, user, "Newer", "b?")
    client = acme.client(token)
    assert ids(client.get("/api/conversations/")) == [newer.id, older.id]

    pinned = client.patch(f"/api/conversations/{older.id}/", {"pinned": True}, format="json")

    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    assert pinned.json()["title"] == "Older"  # a pin alone leaves the title
    assert ids(client.get("/api/conversations/")) == [older.id, newer.id]
    assert client.patch(f"/api/conversations/{older.id}/", {"pinned": False}, format="json").json()["pinned"] is False
    assert ids(client.get("/api/conversations/")) == [newer.id, older.id]


def test_a_conversation_of_someone_else_cannot_be_pinned(acme, new_member):
    owners = conversation(acme, acme.owner, "Board", "q?")
    _, token = new_member(acme)

    assert (
        acme.client(token).patch(f"/api/conversations/{owners.id}/", {"pinned": True}, format="json").status_code == 404
    )
    assert acme.client(token).patch("/api/conversations/", {"pinned": "yes"}, format="json").status_code in (404, 405)


def test_a_pin_must_be_a_boolean_and_a_patch_must_change_something(acme, new_member):
    user, token = new_member(acme)
    mine = conversation(acme, user, "Mine", "q?")
    client = acme.client(token)

    assert client.patch(f"/api/conversations/{mine.id}/", {"pinned": "sometimes"}, format="json").status_code == 400
    assert client.patch(f"/api/conversations/{mine.id}/", {}, format="json").status_code == 400
