"""The chat page's rough edges and expected features (issue 25 #5-#7, #15, #19-#21), in Chromium at
390 and 1280 px: the composer stays on screen, answers render progressively without shrinking, the
new conversation shows at once, a spent allowance says who can do what, a suspension is named,
regenerate / edit / copy, inline citations, conversation search and pinning."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import Page, expect

from ai.models import Conversation, Message
from billing.models import TenantUsagePeriod
from billing.services import period_start
from tenants.models import Tenant
from tenants.services import tenant_reactivate, tenant_suspend
from tests.browser.conftest import PHONE, document_add, fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    return committed(fresh_world, "Features")


def open_chat(page: Page, base: str, world: World, *, path: str = "/chat/", email: str | None = None) -> None:
    log_in(page, base, email or world.member.email, next_path=path)
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)


def conversation_with_turns(world: World, turns: int, *, title: str = "A long talk", user: Any = None) -> int:
    """A committed conversation of the member's with ``turns`` questions and long answers."""

    def make() -> int:
        with tenant_context(world.tenant):
            conversation = Conversation.objects.create(title=title, user=user or world.member)
            for i in range(turns):
                Message.objects.create(conversation=conversation, role="user", content=f"Question {i}?")
                Message.objects.create(
                    conversation=conversation, role="assistant", content=f"Answer {i}. " + "Some words. " * 40
                )
            return conversation.pk

    return committed(make)


# --- #5: the composer stays on screen ----------------------------------------------------------


def test_the_send_button_stays_on_screen_once_a_conversation_has_many_messages(sized_page, own_world, asgi_server):
    page = sized_page
    width = page.viewport_size["width"]
    page.set_viewport_size({"width": width, "height": 800 if width > PHONE else 844})
    conversation = conversation_with_turns(own_world, 12)
    base = asgi_server.host_url(own_world.tenant.subdomain)

    open_chat(page, base, own_world, path=f"/chat/{conversation}/")

    expect(page.locator(".msg")).to_have_count(24)
    if width > PHONE:
        expect(page.locator("#send")).to_be_in_viewport(ratio=1)
        expect(page.locator("#message")).to_be_in_viewport(ratio=1)
        scroll = page.evaluate(
            "(() => { const m = document.getElementById('messages');"
            " return [m.scrollHeight, m.clientHeight, m.scrollTop]; })()"
        )
        assert scroll[0] > scroll[1], "the messages scroll inside their pane"
        assert scroll[2] > 0, "the newest message is shown"
        assert page.evaluate("document.documentElement.scrollHeight") <= 800 + 1, "the page itself does not scroll"
    else:  # a phone scrolls the page: the composer is reachable below the newest message
        page.locator("#send").scroll_into_view_if_needed()
        expect(page.locator("#send")).to_be_in_viewport(ratio=1)
    fits_width(page)
    shot(page, "chat-long-conversation", full_page=False)


# --- #6: progressive Markdown, the new conversation shown at once ---------------------------------

# Records every change to the streaming answer: its height, what it shows, and any node a hostile
# answer would need to run code.
WATCH_ANSWER = """
(() => {
  window.__answer = [];
  const messages = document.getElementById('messages');
  new MutationObserver(() => {
    const node = messages.querySelector('.msg.assistant:last-of-type .text');
    if (!node) return;
    window.__answer.push({
      height: node.getBoundingClientRect().height,
      text: node.textContent,
      strong: node.querySelectorAll('strong').length,
      items: node.querySelectorAll('li').length,
      heading: node.querySelectorAll('h2').length,
      code: node.querySelectorAll('pre code').length,
      dangerous: messages.querySelectorAll('script, img, iframe, [onerror], [onclick]').length,
      streaming: node.closest('.msg').dataset.status === undefined,
      title: document.getElementById('conversation-title').textContent,
      listed: [...document.querySelectorAll('#conversations a[aria-current=page]')].map((a) => a.textContent),
    });
  }).observe(messages, {subtree: true, childList: true, characterData: true});
})()
"""

PROGRESSIVE = (
    "## The plan\n\n"
    "Here is **a very bold statement about the plan** and some *gently emphasised words* here.\n\n"
    "- the first point of it\n- the second point of it\n- the third point of it\n\n"
    "```\nprint('hello')\nprint('world')\n```\n\n"
    "<script>window.pwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.pwned = \'img\'">\n\n'
    "That is **all** for now."
)


def test_markdown_renders_progressively_and_the_answer_never_shrinks_while_it_streams(
    sized_page, own_world, asgi_server, fake_anthropic
):
    page = sized_page
    fake_anthropic.reply = PROGRESSIVE
    fake_anthropic.token_delay = 0.04
    base = asgi_server.host_url(own_world.tenant.subdomain)
    open_chat(page, base, own_world)
    page.evaluate(WATCH_ANSWER)

    page.fill("#message", "What is the plan?")
    page.keyboard.press("Enter")

    answer = page.locator(".msg.assistant .text").last
    expect(answer.locator("strong").first).to_have_text("a very bold statement about the plan", timeout=20_000)
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "ok", timeout=20_000)
    records = page.evaluate("window.__answer")
    streaming = [record for record in records if record["streaming"] and record["text"]]
    assert len(streaming) > 20, "every token was drawn"
    # Rendered as it comes: the heading, the bold words, the list and the code while streaming,
    # never their raw Markdown (an unfinished "**a very" is already bold).
    assert any(r["heading"] and r["strong"] and r["items"] == 3 and r["code"] for r in streaming)
    for record in streaming:
        assert "**" not in record["text"] and "## " not in record["text"] and "```" not in record["text"], record
    heights = [record["height"] for record in records if record["text"]]
    for before, after in zip(heights, heights[1:], strict=False):
        assert after >= before - 0.5, f"the answer shrank from {before} to {after} px: {heights}"
    assert all(record["dangerous"] == 0 for record in records)
    assert page.evaluate("window.pwned") is None
    expect(answer).to_contain_text("<script>window.pwned = 'script'</script>")  # shown as text
    fits_width(page)


def test_a_new_conversation_shows_in_the_header_and_sidebar_as_soon_as_it_starts(
    sized_page, own_world, asgi_server, fake_anthropic
):
    page = sized_page
    fake_anthropic.reply = " ".join(f"word{i}" for i in range(80))
    fake_anthropic.token_delay = 0.02  # the title must show while the answer still streams (1.6 s)
    base = asgi_server.host_url(own_world.tenant.subdomain)
    open_chat(page, base, own_world)
    page.evaluate(WATCH_ANSWER)

    page.fill("#message", "Where do we stand?")
    page.keyboard.press("Enter")

    expect(page.locator(".msg.assistant .text").last).to_contain_text("word2", timeout=15_000)
    expect(page.locator("#conversation-title")).to_have_text("Where do we stand?")
    if page.viewport_size["width"] > PHONE:
        expect(page.locator("#conversations a[aria-current=page]")).to_have_text("Where do we stand?")
    else:
        expect(page.locator("#conversations a[aria-current=page]")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    first = next(record for record in page.evaluate("window.__answer") if record["text"])
    assert first["title"] == "Where do we stand?" and first["listed"] == ["Where do we stand?"], first
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "ok", timeout=20_000)
    expect(page.locator("#conversations a")).to_have_count(1)


# --- #7: a spent allowance refuses before anything is stored, and says who can do what --------------


def leave_in_allowance(world: World, tokens: int) -> None:
    def leave() -> None:
        row, _ = TenantUsagePeriod.objects.get_or_create(tenant=world.tenant, period_start=period_start())
        row.tokens_used = world.tenant.subscription.plan.included_tokens - tokens
        row.save(update_fields=["tokens_used"])

    committed(leave)


def conversations_of(world: World) -> int:
    def count() -> int:
        with tenant_context(world.tenant):
            return Conversation.objects.count()

    return committed(count)


# The owner has a little left: enough for the question, not for an answer worth having (it was
# cut off after a few words and shown as "Failed"); the member has nothing left.
@pytest.mark.parametrize(("role", "left"), [("owner", 200), ("member", 0)])
def test_a_spent_allowance_keeps_the_question_creates_nothing_and_says_who_can_upgrade(
    sized_page, own_world, asgi_server, fake_anthropic, settings, role, left
):
    page = sized_page
    settings.CHAT_CONTEXT_CHUNKS = 0  # a prompt of known size (about 120 tokens): no passages
    fake_anthropic.reply = " ".join(f"word{i}" for i in range(300))
    leave_in_allowance(own_world, left)
    person = own_world.owner if role == "owner" else own_world.member
    base = asgi_server.host_url(own_world.tenant.subdomain)
    open_chat(page, base, own_world, email=person.email)

    page.fill("#message", "What does the handbook say about holidays?")
    page.keyboard.press("Enter")

    error = page.locator("#chat-error")
    expect(error).to_contain_text("tokens", timeout=15_000)
    expect(page.locator("#message")).to_have_value("What does the handbook say about holidays?")
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator(".badge-error")).to_have_count(0)
    expect(page).to_have_url(f"{base}/chat/")
    expect(page.locator("#conversation-title")).to_have_text("New conversation")
    expect(page.locator("#send")).to_be_enabled()
    if role == "owner":
        link = error.locator("a[href='/billing/']")
        expect(link).to_be_visible()
        expect(link).to_contain_text("Upgrade")
    else:
        expect(error.locator("a")).to_have_count(0)
        expect(error).to_contain_text("ask an owner")
        expect(error).not_to_contain_text("Upgrade the plan to continue")
    assert conversations_of(own_world) == 0
    assert fake_anthropic.requests == []
    fits_width(page)
    shot(page, f"chat-allowance-spent-{role}")


# --- #15: a suspension is named, not taken for a network failure -------------------------------------


def run_in_server(asgi_server: Any, fn: Any) -> Any:
    """``fn`` run as the server runs a sync view (its on-commit broadcasts reach the open sockets)."""
    return asyncio.run_coroutine_threadsafe(asgi_server.run_as_a_view(fn), asgi_server.loop).result(timeout=30)


def test_an_open_chat_says_the_workspace_was_suspended(sized_page, own_world, asgi_server, fake_anthropic, settings):
    settings.SUPPORT_EMAIL = "help@strata.example"
    page = sized_page
    fake_anthropic.reply = "Hello there."
    base = asgi_server.host_url(own_world.tenant.subdomain)
    open_chat(page, base, own_world)
    page.fill("#message", "Hello?")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "ok", timeout=20_000)

    run_in_server(asgi_server, lambda: tenant_suspend(tenant=Tenant.objects.get(pk=own_world.tenant.pk)))
    try:
        error = page.locator("#chat-error")
        expect(error).to_contain_text("This organisation is suspended")  # told when its socket closed
        page.fill("#message", "Are you still there?")
        page.keyboard.press("Enter")

        expect(error).to_contain_text("This organisation is suspended")
        expect(error).to_contain_text("help@strata.example")
        expect(error).not_to_contain_text("Could not connect")
        expect(page.locator("#message")).to_have_value("Are you still there?")
        expect(page.locator("#send")).to_be_enabled()
    finally:
        run_in_server(asgi_server, lambda: tenant_reactivate(tenant=Tenant.objects.get(pk=own_world.tenant.pk)))


# --- #21: conversation search and pinning ---------------------------------------------------------


def show_conversations(page: Page) -> None:
    """Open the conversations panel, which is folded away on a phone (ai/static/ai/chat-fold.js; not
    on a page that answers a search of them)."""
    if page.viewport_size["width"] <= PHONE:
        page.wait_for_load_state()
        if not page.locator("#conversations-panel").evaluate("panel => panel.open"):
            page.click("#conversations-panel summary")


def test_conversations_are_searched_by_title_and_text_and_pinned_ones_come_first(sized_page, own_world, asgi_server):
    page = sized_page
    parking = conversation_with_turns(own_world, 1, title="Parking")
    holiday = conversation_with_turns(own_world, 1, title="Holiday allowance")

    def leave_talk() -> int:
        with tenant_context(own_world.tenant):
            talk = Conversation.objects.create(title="Leave", user=own_world.member)
            Message.objects.create(conversation=talk, role="user", content="Can I carry HOLIDAY days over?")
            return talk.pk

    leave = committed(leave_talk)
    conversation_with_turns(own_world, 1, title="Holiday of the owner", user=own_world.owner)  # not theirs
    base = asgi_server.host_url(own_world.tenant.subdomain)
    open_chat(page, base, own_world)
    listed = page.locator("#conversations a[data-id]")
    expect(listed).to_have_count(3)

    show_conversations(page)
    page.fill("#conversation-search", "holiday")
    page.keyboard.press("Enter")

    expect(listed).to_have_count(2)
    assert sorted(int(i) for i in listed.evaluate_all("links => links.map((a) => a.dataset.id)")) == sorted(
        [holiday, leave]
    )
    expect(page.locator("#conversation-search")).to_have_value("holiday")
    show_conversations(page)
    page.fill("#conversation-search", "no such words")
    page.keyboard.press("Enter")
    expect(listed).to_have_count(0)
    expect(page.locator("#no-conversations")).to_contain_text("No conversation matches")

    page.goto(f"{base}/chat/{parking}/")
    expect(listed.first).not_to_have_attribute("data-id", str(parking))  # the oldest comes last
    page.click("#pin-conversation")
    expect(page.locator("#pin-conversation")).to_have_text("Unpin")
    expect(listed.first).to_have_attribute("data-id", str(parking))
    expect(page.locator("#conversations li").first.locator(".pin-mark")).to_have_count(1)
    fits_width(page)
    shot(page, "chat-search-pin")
    page.click("#pin-conversation")
    expect(page.locator("#pin-conversation")).to_have_text("Pin")
    expect(listed.first).not_to_have_attribute("data-id", str(parking))


# --- #19: regenerate an answer, edit and resend a question, copy an answer ------------------------


def ask_and_wait(page: Page, question: str) -> None:
    answers = page.locator(".msg.assistant").count()
    page.fill("#message", question)
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant[data-status=ok]")).to_have_count(answers + 1, timeout=20_000)
    expect(page.locator(".msg.assistant").last.locator("[data-action=regenerate]")).to_be_visible()


def texts(page: Page, role: str) -> list[str]:
    return [text.strip() for text in page.locator(f".msg.{role} .text").all_inner_texts()]


def test_an_answer_is_copied_regenerated_and_a_question_edited_and_resent(
    sized_page, own_world, asgi_server, fake_anthropic, settings
):
    settings.CHAT_CONTEXT_CHUNKS = 0
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    open_chat(page, base, own_world)
    fake_anthropic.reply = "Answer **one**."
    ask_and_wait(page, "First question?")
    fake_anthropic.reply = "Answer two."
    ask_and_wait(page, "Second question?")

    last = page.locator(".msg.assistant").last
    last.locator("[data-action=copy]").click()
    expect(last.locator("[data-action=copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == "Answer two."
    page.locator(".msg.assistant").first.locator("[data-action=copy]").click()
    assert page.evaluate("navigator.clipboard.readText()") == "Answer **one**."  # the Markdown, as written

    fake_anthropic.reply = "Answer two, again."
    page.locator(".msg.assistant").last.locator("[data-action=regenerate]").click()
    expect(page.locator(".msg.assistant .text").last).to_have_text("Answer two, again.", timeout=20_000)
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "ok", timeout=20_000)
    assert texts(page, "user") == ["First question?", "Second question?"]
    assert texts(page, "assistant") == ["Answer one.", "Answer two, again."]
    assert fake_anthropic.requests[-1]["messages"][-1]["content"].endswith("Second question?")

    fake_anthropic.reply = "An edited answer."
    first = page.locator(".msg.user").first
    first.locator("[data-action=edit]").click()
    first.locator("textarea").fill("First question, edited?")
    first.locator("button[type=submit]").click()

    expect(page.locator(".msg.assistant .text").last).to_have_text("An edited answer.", timeout=20_000)
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "ok", timeout=20_000)
    expect(page.locator(".msg")).to_have_count(2)
    assert texts(page, "user") == ["First question, edited?"]
    assert len(fake_anthropic.requests[-1]["messages"]) == 1  # continued from the edited question
    expect(page.locator("#message")).to_have_value("")
    fits_width(page)
    shot(page, "chat-regenerate-edit")

    page.reload()
    expect(page.locator(".msg")).to_have_count(2)
    assert texts(page, "user") == ["First question, edited?"]
    assert texts(page, "assistant") == ["An edited answer."]


# --- #20: inline citations -----------------------------------------------------------------------


def test_citation_markers_link_to_their_passages_and_the_sources_stay(
    sized_page, own_world, asgi_server, fake_anthropic
):
    page = sized_page
    laptops = "Laptops. Company laptops are encrypted and lock themselves after five minutes without input. " * 6
    parking = "Parking. The car park has forty spaces, given out by a monthly lottery among the staff. " * 6
    document = document_add(asgi_server, own_world, "Office guide", f"{laptops}\n\n{parking}")
    fake_anthropic.reply = "Spaces are given out by a monthly lottery [1]. See also [7], which does not exist."
    base = asgi_server.host_url(own_world.tenant.subdomain)
    open_chat(page, base, own_world)

    page.fill("#message", "How do I get a parking space?")
    page.keyboard.press("Enter")

    answer = page.locator(".msg.assistant").last
    expect(answer).to_have_attribute("data-status", "ok", timeout=20_000)
    prompt = fake_anthropic.requests[-1]["messages"][-1]["content"]
    assert "like [1] or [2]" in prompt
    first = re.search(r'<document index="1" [^>]*>\n(.*?)\n</document>', prompt, re.S)
    assert first is not None, prompt
    cite = answer.locator(".text a.cite")
    expect(cite).to_have_count(1)  # [7] names no passage: left as text
    expect(cite).to_have_text("[1]")
    expect(answer.locator(".text")).to_contain_text("[7]")
    expect(answer.locator(".sources a")).to_have_count(1)  # the source list is kept
    assert f"/documents/{document['id']}/?passage=" in cite.get_attribute("href")
    fits_width(page)
    shot(page, "chat-citations")

    cite.click()
    highlight = page.locator("mark#highlight")
    expect(highlight).to_contain_text(first.group(1).strip()[:40])
    expect(highlight).to_be_in_viewport()
