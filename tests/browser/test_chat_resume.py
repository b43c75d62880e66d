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
