"""The chat page keeps an answer through a reload and through a dropped connection (headless Chromium)."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM
from tests.factories import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian chromium-headless-shell is not installed (tests/run.sh installs it)"
    ),
]
# Remembers the page's WebSockets, so a test can drop one as a network failure would.
TRACK_SOCKETS = """
window.__sockets = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""


@pytest.fixture
def chat(browser, live_worlds, asgi_server, fake_anthropic):
    """The globex member's chat page, logged in, with a slow answer ready at the fake."""
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script(TRACK_SOCKETS)
    base = asgi_server.host_url("globex")
    page.goto(f"{base}/login/?next=/chat/")
    page.fill("#id_username", live_worlds["globex"].member.email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/chat/")
    fake_anthropic.reply = " ".join(f"word{i}" for i in range(60))
    fake_anthropic.token_delay = 0.05  # three seconds of answer
    yield page
    context.close()


def ask(page, question):
    page.fill("#message", question)
    page.click("#send")
    answer = page.locator(".msg.assistant .text").last
    expect(answer).to_contain_text("word3", timeout=15_000)
    return answer


def test_reloading_the_chat_page_mid_answer_continues_and_completes_the_answer(chat, fake_anthropic):
    answer = ask(chat, "Tell me a long story")
    assert "word59" not in answer.text_content()

    chat.reload()

    expect(chat.locator(".msg.user .text").last).to_have_text("Tell me a long story")
    expect(chat.locator(".msg.assistant .text").last).to_have_text(fake_anthropic.reply, timeout=20_000)
    expect(chat.locator(".msg.assistant")).to_have_count(1)
    expect(chat.locator("#send")).to_be_enabled()
    assert chat.evaluate("sessionStorage.getItem('strata.chat.answer')") is None
    assert fake_anthropic.disconnects == 0


def test_a_dropped_connection_mid_answer_reconnects_and_resumes_without_gap_or_repeat(chat, fake_anthropic):
    answer = ask(chat, "Another long story")

    chat.evaluate("window.__sockets.at(-1).close()")

    expect(answer).to_have_text(fake_anthropic.reply, timeout=20_000)
    assert chat.evaluate("window.__sockets.length") == 2
    assert fake_anthropic.disconnects == 0


def test_a_page_served_while_its_answer_still_streams_follows_it_to_the_end(chat, fake_anthropic):
    """A page that shows an answer not yet settled, with no record of it in its tab (a second tab; a
    reload whose old page saw ``done`` after the new one was served), follows it rather than leaving
    it shown as stopped."""
    ask(chat, "A story for two tabs")
    other = chat.context.new_page()  # a tab of its own: its sessionStorage is empty
    other.goto(chat.url)

    expect(other.locator(".msg.assistant .text").last).to_have_text(fake_anthropic.reply, timeout=20_000)
    expect(other.locator(".msg.assistant")).to_have_count(1)
    expect(other.locator(".msg-status")).to_have_count(0)
    expect(other.locator("#send")).to_be_enabled()
    expect(chat.locator(".msg.assistant .text").last).to_have_text(fake_anthropic.reply, timeout=20_000)
    assert fake_anthropic.disconnects == 0


def test_a_reload_whose_answer_is_gone_shows_it_as_saved_and_the_page_can_ask_again(chat, fake_anthropic):
    """The answer the tab remembers has no log any more (its process died and the log expired): the
    page shows the message as saved, and Send works."""
    fake_anthropic.token_delay = 0.0
    ask(chat, "A short one")
    expect(chat.locator("#send")).to_be_enabled(timeout=20_000)
    message_id = chat.locator(".msg.assistant").last.get_attribute("data-message-id")
    conversation_id = chat.evaluate("Number(document.getElementById('messages').dataset.conversationId)")
    gone = {"messageId": int(message_id) + 1000, "conversationId": conversation_id, "seq": 3}
    chat.evaluate("(answer) => sessionStorage.setItem('strata.chat.answer', JSON.stringify(answer))", gone)

    chat.reload()

    expect(chat.locator(".msg.assistant .text").last).to_have_text(fake_anthropic.reply)
    expect(chat.locator("#send")).to_be_enabled()
    expect(chat.locator("#stop")).to_be_disabled()
    expect(chat.locator("#chat-error")).to_have_text("")
    assert chat.evaluate("sessionStorage.getItem('strata.chat.answer')") is None
