"""The tenant pages in headless Chromium: log in, upload, ask, watch tokens arrive, see sources."""

from playwright.sync_api import expect

from tests.browser.conftest import log_in as log_in_at
from tests.factories import PASSWORD


def log_in(page, base, email):
    log_in_at(page, base, email)
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
    row = page.locator("#documents .doc-item", has_text="lighthouse-routine")
    expect(row.locator(".doc-status")).to_have_text("Ready", timeout=60_000)

    page.click("nav >> text=Chat")
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)  # its module ran: typing is kept
    page.fill("#message", "When does the keeper write down the weather?")
    page.click("#send")
    answer = page.locator(".msg.assistant .text").last
    expect(answer).not_to_have_text("", timeout=10_000)
    partial = answer.text_content()
    assert 0 < len(partial) < len(fake_anthropic.reply), "tokens should arrive one by one"
    expect(answer).to_have_text(fake_anthropic.reply, timeout=15_000)
    expect(answer).to_have_attribute("class", "text prose")  # the server's rendering replaced the stream
    expect(page.locator(".msg.assistant .sources").last).to_contain_text("lighthouse-routine")
    page.screenshot(path=str(tmp_path / "chat.png"))


def test_upstream_errors_are_shown_and_stop_cancels(page, live_worlds, asgi_server, fake_anthropic):
    globex = live_worlds["globex"]
    base = asgi_server.host_url("globex")
    log_in(page, base, globex.member.email)
    page.click("nav >> text=Chat")
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)

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
    page.click("details.menu summary")
    page.click("#logout")
    expect(page).to_have_url(f"{base}/login/")
