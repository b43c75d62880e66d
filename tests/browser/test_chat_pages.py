"""Chat in the browser, at 390 px and 1280 px: Markdown rendered and made safe (a script in the
model's answer never runs), Enter and Shift+Enter, an over-long message refused with its text
kept, stopped and failed answers marked (also after a reload), conversations renamed, deleted
and highlighted, sources linking to the passage they came from."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import chat_over_sse, document_add, fits_width, fresh_world, log_in, shot
from tests.conftest import World
from tests.processes import committed

INJECTION = (
    "Here is **bold** advice.\n\n"
    "```python\nprint('hello')\n```\n\n"
    "<script>window.pwned = 'script'</script>\n\n"
    '<img src="x" onerror="window.pwned = \'img\'">\n\n'
    "[a link](javascript:window.pwned='link') and [the handbook](https://example.com/handbook)"
)


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    return committed(fresh_world, "Chatty")


def open_chat(page: Page, base: str, world: World) -> None:
    log_in(page, base, world.member.email, next_path="/chat/")
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)


def answer_is_safe(page: Page) -> None:
    expect(page.locator(".msg.assistant").last).to_have_attribute(
        "data-status", "ok", timeout=90_000
    )  # the whole answer, which may include loading the model
    answer = page.locator(".msg.assistant .text").last
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("pre code")).to_contain_text("print('hello')")
    expect(answer).to_contain_text("<script>window.pwned = 'script'</script>")  # shown as text, not run
    assert page.evaluate("window.pwned") is None
    assert page.locator("#messages script, #messages img, #messages [onerror]").count() == 0
    assert answer.locator("a").count() == 1
    assert answer.locator("a").get_attribute("href") == "https://example.com/handbook"
    assert "noopener" in answer.locator("a").get_attribute("rel")


def test_markdown_is_rendered_and_a_script_in_the_answer_never_runs(sized_page, own_world, asgi_server, fake_anthropic):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    fake_anthropic.reply = INJECTION
    open_chat(page, base, own_world)

    page.fill("#message", "Any advice?")
    page.keyboard.press("Enter")

    expect(page.locator(".msg.user").last).to_have_text("Any advice?")
    answer_is_safe(page)
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    expect(page.locator("#conversations [aria-current=page]")).to_have_text("Any advice?")
    fits_width(page)
    shot(page, "chat-markdown")

    page.reload()
    answer_is_safe(page)


def test_enter_sends_shift_enter_adds_a_line_and_an_over_long_message_stays(
    sized_page, own_world, asgi_server, fake_anthropic, settings
):
    page = sized_page
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    base = asgi_server.host_url(own_world.tenant.subdomain)
    fake_anthropic.reply = "Noted."
    open_chat(page, base, own_world)
    box = page.locator("#message")

    too_long = "Please read all of this carefully. " * 3  # 105 characters
    box.fill(too_long)
    expect(page.locator("#char-count")).to_have_class(re.compile("over"))
    box.press("Enter")

    expect(page.locator("#chat-error")).to_contain_text("the limit is 100")
    expect(box).to_have_value(too_long)
    expect(page.locator(".msg.user")).to_have_count(0)
    assert fake_anthropic.requests == []

    box.fill("First line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("First line\nsecond line")
    box.press("Enter")

    expect(page.locator(".msg.user .text").last).to_have_text("First line\nsecond line")
    expect(page.locator(".msg.assistant .text").last).to_have_text("Noted.", timeout=15_000)
    expect(box).to_have_value("")
    assert fake_anthropic.requests[-1]["messages"][-1]["content"].endswith("First line\nsecond line")


def test_stopped_and_failed_answers_are_marked_also_after_a_reload(sized_page, own_world, asgi_server, fake_anthropic):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    fake_anthropic.reply = " ".join(f"word{i}" for i in range(400))
    fake_anthropic.token_delay = 0.03
    open_chat(page, base, own_world)

    page.fill("#message", "Tell me everything")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant .text").last).to_contain_text("word3", timeout=15_000)
    page.click("#stop")

    stopped = page.locator(".msg.assistant").last
    expect(stopped.locator(".badge")).to_have_text("Stopped")
    assert fake_anthropic.wait_for_disconnect(5)
    expect(page.locator("#send")).to_be_enabled()

    fake_anthropic.reset()
    fake_anthropic.error_mid_stream_after = 3
    page.fill("#message", "Try again")
    page.keyboard.press("Enter")
    failed = page.locator(".msg.assistant").last
    expect(failed.locator(".badge")).to_have_text("Failed", timeout=15_000)
    expect(page.locator("#chat-error")).not_to_be_empty()
    shot(page, "chat-stopped-failed")

    page.reload()
    answers = page.locator(".msg.assistant")
    expect(answers).to_have_count(2)
    expect(answers.nth(0)).to_have_attribute("data-status", "interrupted")
    expect(answers.nth(0).locator(".badge")).to_have_text("Stopped")
    expect(answers.nth(0).locator(".text")).to_contain_text("word0")
    expect(answers.nth(1)).to_have_attribute("data-status", "error")
    expect(answers.nth(1).locator(".badge")).to_have_text("Failed")


def test_conversations_are_highlighted_renamed_and_deleted(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    first = chat_over_sse(asgi_server, own_world, "Where is the office?", as_member=True)[0]["conversation_id"]
    second = chat_over_sse(asgi_server, own_world, "When is lunch?", as_member=True)[0]["conversation_id"]
    log_in(page, base, own_world.member.email, next_path=f"/chat/{first}/")

    current = page.locator("#conversations [aria-current=page]")
    expect(current).to_have_text("Where is the office?")
    if page.viewport_size["width"] < 700:
        page.click("#conversations-panel summary")  # folded away on a phone
    page.click(f'#conversations a[data-id="{second}"]')
    expect(current).to_have_text("When is lunch?")
    expect(page.locator("#conversation-title")).to_have_text("When is lunch?")

    page.click("#rename summary")
    page.fill("#rename-title", "Lunch times")
    page.click("#rename button[type=submit]")
    expect(page.locator("#conversation-title")).to_have_text("Lunch times")
    expect(current).to_have_text("Lunch times")
    fits_width(page)

    page.click("#delete-conversation")
    expect(page.get_by_role("heading", name="Delete “Lunch times”?")).to_be_visible()
    page.click("#confirm-delete")
    expect(page).to_have_url(f"{base}/chat/")
    expect(page.locator(".flash")).to_contain_text("Deleted the conversation “Lunch times”")
    expect(page.locator(f'#conversations a[data-id="{second}"]')).to_have_count(0)
    expect(page.locator(f'#conversations a[data-id="{first}"]')).to_have_count(1)


def test_on_a_phone_the_conversations_fold_before_the_page_below_them_is_drawn(sized_page, own_world, asgi_server):
    """Folded after load (by chat.js, a module), the panel moved the page up under a tap already aimed
    at Rename: CI's run clicked the menu's summary just before the fold and the menu never showed."""
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    conversation = chat_over_sse(asgi_server, own_world, "Where is the office?", as_member=True)[0]["conversation_id"]
    # Whether the panel is open when the parser reaches the conversation's header, below it.
    page.add_init_script(
        """new MutationObserver((_, observer) => {
             if (!document.querySelector(".thread-head")) return;
             window.panelOpenAtThread = document.getElementById("conversations-panel").open;
             observer.disconnect();
           }).observe(document, {childList: true, subtree: true});"""
    )
    log_in(page, base, own_world.member.email, next_path=f"/chat/{conversation}/")
    expect(page.locator("#conversation-title")).to_have_text("Where is the office?")

    phone = page.viewport_size["width"] <= 760
    assert page.evaluate("window.panelOpenAtThread") is not phone
    assert page.locator("#conversations-panel").evaluate("panel => panel.open") is not phone
    page.click("#rename summary")
    expect(page.locator("#rename-title")).to_be_visible()


def test_a_source_opens_the_passage_and_an_unrelated_question_cites_nothing(sized_page, own_world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(own_world.tenant.subdomain)
    laptops = "Laptops. Company laptops are encrypted and lock themselves after five minutes without input. " * 6
    parking = "Parking. The car park has forty spaces, given out by a monthly lottery among the staff. " * 6
    document = document_add(asgi_server, own_world, "Office guide", f"{laptops}\n\n{parking}")
    open_chat(page, base, own_world)

    page.fill("#message", "How do I get a parking space?")
    page.keyboard.press("Enter")
    source = page.locator(".msg.assistant .sources a").last
    expect(source).to_have_text(re.compile("Office guide"), timeout=20_000)
    expect(page.locator(".msg.assistant .sources a")).to_have_count(1)  # one source per document

    source.click()
    assert f"/documents/{document['id']}/?passage=" in page.url
    highlight = page.locator("mark#highlight")
    expect(highlight).to_contain_text("monthly lottery")
    expect(highlight).not_to_contain_text("encrypted")
    expect(highlight).to_be_in_viewport()

    page.go_back()
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)
    page.fill("#message", "Who won the football world cup in 1966?")
    page.keyboard.press("Enter")
    last = page.locator(".msg.assistant").last
    expect(last.locator(".no-sources")).to_contain_text("No passage of your documents matched", timeout=20_000)
    expect(last.locator(".text")).to_contain_text("no passages from your documents")


def test_a_question_sent_before_the_chat_script_has_run_is_kept(page, own_world, asgi_server):
    """On a slow connection the page shows before chat.js has run: Send waits for it, so a click
    then neither reloads the page (the form's own submission) nor loses the question."""
    base = asgi_server.host_url(own_world.tenant.subdomain)
    log_in(page, base, own_world.member.email)
    held: list = []
    page.route("**/ai/chat.js*", lambda route: held.append(route) if len(held) < 1 else route.continue_())
    page.goto(f"{base}/chat/", wait_until="commit")  # the page, its script still on its way
    page.locator("#send").wait_for(state="attached")
    page.fill("#message", "Asked early")

    expect(page.locator("#send")).to_be_disabled()
    page.locator("#send").click(force=True)  # a person clicking it at once
    assert page.url == f"{base}/chat/"
    expect(page.locator("#message")).to_have_value("Asked early")

    held[0].continue_()
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#message")).to_have_value("Asked early")
