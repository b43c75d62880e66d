"""The tenant pages in headless Chromium: log in, upload, ask, watch tokens arrive, see sources."""

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.factories import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (tests/run.sh installs it)"
    ),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # *.localhost must reach our server, as in a desktop browser
    "--host-resolver-rules=MAP *.localhost 127.0.0.1",
]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # still synchronous, so Django's async-safety guard is told so.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def log_in(page, base, email):
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/login/?next=/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name="Upload a document")).to_be_visible()


def test_log_in_upload_ask_and_watch_the_answer_stream(
    page, live_worlds, asgi_server, fake_anthropic, tmp_path, settings
):
    globex = live_worlds["globex"]
    base = asgi_server.host_url("globex")
    fake_anthropic.reply = "The lighthouse keeper logs the weather at dawn and at dusk, every single day."
    fake_anthropic.token_delay = 0.05
    # Named for its tenant: other modules on this worker check every globex title starts with "Globex".
    notes = tmp_path / "Globex lighthouse-routine.txt"
    notes.write_text(
        "The keeper of the Skerry lighthouse records wind speed and weather twice daily, at dawn and dusk."
    )

    log_in(page, base, globex.member.email)
    page.set_input_files("#file", str(notes))
    page.click("#upload button[type=submit]")
    row = page.locator("#documents tr", has_text="lighthouse-routine")
    expect(row.locator(".doc-status")).to_have_text("ready", timeout=60_000)

    page.click("text=Chat")
    page.fill("#message", "When does the keeper write down the weather?")
    page.click("#send")
    answer = page.locator(".msg.assistant .text").last
    expect(answer).not_to_have_text("", timeout=10_000)
    partial = answer.text_content()
    assert 0 < len(partial) < len(fake_anthropic.reply), "tokens should arrive one by one"
    expect(answer).to_have_text(fake_anthropic.reply, timeout=15_000)
    expect(page.locator(".msg.assistant .sources").last).to_contain_text("lighthouse-routine")
    page.screenshot(path=str(tmp_path / "chat.png"))


def test_upstream_errors_are_shown_and_stop_cancels(page, live_worlds, asgi_server, fake_anthropic):
    globex = live_worlds["globex"]
    base = asgi_server.host_url("globex")
    log_in(page, base, globex.member.email)
    page.click("text=Chat")

    fake_anthropic.reply = " ".join(f"word{i}" for i in range(400))
    fake_anthropic.token_delay = 0.03
    page.fill("#message", "Tell me everything")
    page.click("#send")
    expect(page.locator(".msg.assistant .text").last).not_to_have_text("", timeout=10_000)
    page.click("#stop")
    assert fake_anthropic.wait_for_disconnect(5)

    fake_anthropic.reset()
    fake_anthropic.fail_before_first_token = [400]
    page.fill("#message", "Try again")
    page.click("#send")
    expect(page.locator("#chat-error")).to_have_text(
        "The language model failed to answer this request.", timeout=10_000
    )


def test_a_non_member_cannot_log_in_and_logout_works(page, live_worlds, asgi_server):
    acme, globex = live_worlds["acme"], live_worlds["globex"]
    base = asgi_server.host_url("globex")
    page.goto(f"{base}/login/")
    page.fill("#id_username", acme.member.email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct email and password")  # as if wrong

    log_in(page, base, globex.member.email)
    page.click("#logout")
    expect(page).to_have_url(f"{base}/login/")
