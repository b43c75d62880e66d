"""The documents and chat pages as the server renders them: fragments for htmx, plain POSTs without
JavaScript, the passage highlight, confirmations, and nobody else's conversations."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from ai.models import Chunk, Conversation, Document, Message
from billing.models import Plan, Subscription
from tests.ai.factories import DocumentFactory

HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def member(acme):  # noqa: ANN001, ANN201
    return acme.session_client(acme.member)


def test_pages_send_visitors_to_log_in(acme):
    for path in ("/", "/documents/1/", "/chat/", "/usage/", "/billing/"):
        response = acme.client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next="), path


def test_an_empty_workspace_says_how_to_start(member):
    response = member.get("/")

    assert response.status_code == 200
    assert "No documents yet" in response.content.decode()


def test_an_upload_from_the_page_adds_the_document(member, acme, ingest):
    with ingest():
        response = member.post(
            "/documents/upload/", {"title": "Notes", "content": "The keeper logs the weather."}, **HX
        )

    assert response.status_code == 200
    body = response.content.decode()
    assert "Added “" in body and 'hx-swap-oob="outerHTML"' in body
    with tenant_context(acme.tenant):
        assert Document.objects.get(title="Notes").status == Document.Status.READY


def test_a_refused_upload_says_why_and_a_plain_post_redirects(member, acme):
    refused = member.post("/documents/upload/", {"title": "Empty", "content": "   "}, **HX)
    assert refused.status_code == 400
    assert "no text" in refused.content.decode()

    plain = member.post("/documents/upload/", {"title": "Plain", "content": "Works without JavaScript."})
    assert plain.status_code == 302 and plain["Location"] == "/"
    assert "Added “Plain”" in member.get("/").content.decode()


def test_the_list_fragment_polls_only_while_something_is_indexing(member, acme):
    with tenant_context(acme.tenant):
        document = DocumentFactory(title="Waiting", status=Document.Status.PENDING)
    assert 'hx-trigger="every 1s"' in member.get("/documents/list/").content.decode()

    with tenant_context(acme.tenant):
        Document.objects.filter(pk=document.pk).update(status=Document.Status.READY)
    assert "hx-trigger" not in member.get("/documents/list/").content.decode()


def test_a_search_answers_a_fragment_to_htmx_and_a_page_otherwise(member, ingest):
    with ingest():
        member.post("/documents/upload/", {"title": "Bread", "content": "Feed the sourdough starter at night."})

    fragment = member.get("/", {"q": "How do I look after my bread yeast?"}, **HX).content.decode()
    assert fragment.startswith('<div id="search-results"') and "Bread" in fragment and "match" in fragment
    page = member.get("/", {"q": "How do I look after my bread yeast?"}).content.decode()
    assert "<html" in page and "Bread" in page
    nothing = member.get("/", {"q": "Which team won the 1966 world cup?"}, **HX).content.decode()
    assert "Nothing relevant found" in nothing


def test_the_document_page_highlights_the_passage_asked_for(member, acme):
    with tenant_context(acme.tenant):
        document = DocumentFactory(
            title="Guide", content="Intro line.\n\nThe  parking   lottery\nruns monthly.\n\nEnd."
        )
        chunk = Chunk.objects.create(
            document=document,
            collection_id=document.collection_id,
            position=0,
            text="The parking lottery runs monthly.",
        )

    body = member.get(f"/documents/{document.id}/", {"passage": chunk.id}).content.decode()

    # Found although the passage's spaces and line breaks differ from the text's.
    assert '<mark id="highlight">The  parking   lottery\nruns monthly.</mark>' in body
    assert "passage is-highlighted" in body
    assert "<mark" not in member.get(f"/documents/{document.id}/").content.decode()


def test_a_document_is_deleted_only_after_the_confirmation(member, acme):
    with tenant_context(acme.tenant):
        document = DocumentFactory(title="Old policy", created_by=acme.member)  # members delete their own

    confirm = member.get(f"/documents/{document.id}/delete/")
    assert confirm.status_code == 200 and "Delete “Old policy”?" in confirm.content.decode()
    with tenant_context(acme.tenant):
        assert Document.objects.filter(pk=document.pk).exists()

    done = member.post(f"/documents/{document.id}/delete/")
    assert done.status_code == 302 and done["Location"] == "/"
    with tenant_context(acme.tenant):
        assert not Document.objects.filter(pk=document.pk).exists()


def test_the_summarise_button_returns_the_summary_or_says_why_not(member, acme):
    with tenant_context(acme.tenant):
        document = DocumentFactory(title="Report", content="Revenue grew eleven percent. Costs fell. " * 20)

    summary = member.post(f"/documents/{document.id}/summarise/", **HX)
    assert summary.status_code == 200 and 'id="summary-text"' in summary.content.decode()

    Subscription.objects.filter(tenant=acme.tenant).update(plan=Plan.objects.create(slug="tiny", included_tokens=0))
    refused = member.post(f"/documents/{document.id}/summarise/", **HX)
    assert refused.status_code == 402 and "used its 0 tokens" in refused.content.decode()


def test_a_conversation_page_shows_how_each_answer_ended(member, acme):
    with tenant_context(acme.tenant):
        conversation = Conversation.objects.create(user=acme.member, title="Status check")
        for content, status, error in (
            ("A **full** answer.", "ok", ""),
            ("Half an", "interrupted", "Stopped by the user."),
            ("", "error", "The answer could not be completed."),
            ("Still being wr", "interrupted", Message.UNFINISHED),  # not settled: streaming, or its process died
        ):
            Message.objects.create(conversation=conversation, role="user", content="Question?")
            Message.objects.create(
                conversation=conversation, role="assistant", content=content, status=status, error=error
            )

    body = member.get(f"/chat/{conversation.id}/").content.decode()

    assert "<strong>full</strong>" in body
    assert body.count(">Stopped<") == 2 and body.count(">Failed<") == 1
    # The page follows the unsettled one over the socket (ai/static/ai/chat.js); its saved text meanwhile.
    assert body.count('data-unsettled="true"') == 1
    assert "Still being wr" in body.split('data-unsettled="true">')[1].split("</div>")[0]
    assert (
        f'href="/chat/{conversation.id}/" data-id="{conversation.id}" title="Status check" aria-current="page"' in body
    )


def test_conversations_are_renamed_and_deleted_by_their_owner_only(member, acme):
    with tenant_context(acme.tenant):
        mine = Conversation.objects.create(user=acme.member, title="Mine")
        theirs = Conversation.objects.create(user=acme.owner, title="Theirs")

    assert member.get(f"/chat/{theirs.id}/").status_code == 404
    assert member.post(f"/chat/{theirs.id}/rename/", {"title": "Hacked"}).status_code == 404
    assert member.post(f"/chat/{theirs.id}/delete/").status_code == 404

    assert member.post(f"/chat/{mine.id}/rename/", {"title": "  Lunch   plans "}).status_code == 302
    assert member.post(f"/chat/{mine.id}/delete/").status_code == 302
    with tenant_context(acme.tenant):
        assert not Conversation.objects.filter(pk=mine.pk).exists()
        assert Conversation.objects.get(pk=theirs.pk).title == "Theirs"


def test_the_conversations_api_renames_and_deletes(acme):
    client = acme.client(acme.member_token)
    with tenant_context(acme.tenant):
        conversation = Conversation.objects.create(user=acme.member, title="Draft")

    renamed = client.patch(f"/api/conversations/{conversation.id}/", {"title": "Final"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["title"] == "Final"
    blank = client.patch(f"/api/conversations/{conversation.id}/", {"title": "   "}, format="json")
    assert blank.status_code == 400 and "title" in blank.json()["error"]["fields"]
    other = acme.client(acme.owner_token).delete(f"/api/conversations/{conversation.id}/")
    assert other.status_code == 404
    assert client.delete(f"/api/conversations/{conversation.id}/").status_code == 204
    assert client.get(f"/api/conversations/{conversation.id}/").status_code == 404


def test_the_loading_notice_shows_until_the_embedding_model_is_warm(member, monkeypatch):
    from ai.embedding import embedders

    monkeypatch.setattr(embedders, "_warm", type(embedders._warm)())
    assert "still loading its search model" in member.get("/").content.decode()
    embedders._warm.set()
    assert "still loading its search model" not in member.get("/").content.decode()
