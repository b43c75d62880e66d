"""The chat page's rough edges and expected features (issue 25 #5-#7, #15, #19-#21), in Chromium at
390 and 1280 px: the composer stays on screen, answers render progressively without shrinking, the
new conversation shows at once, a spent allowance says who can do what, a suspension is named,
regenerate / edit / copy, inline citations, conversation search and pinning."""

from __future__ import annotations

from typing import Any

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import Page, expect

from ai.models import Conversation, Message
from tests.browser.conftest import PHONE, fits_width, fresh_world, log_in, shot
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
