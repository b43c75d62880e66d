"""Feedback in the browser: a thumbs down and a comment under an answer reach the answer's agent
action and the admin's review queue, and the page shows the rating after a reload (strict CSP)."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context
from playwright.sync_api import expect

from ai.models import AgentAction
from ai.services.review import agent_actions_matching
from tests.browser.conftest import LAPTOP, fresh_world, log_in
from tests.conftest import World
from tests.processes import committed


@pytest.fixture
def width() -> int:
    return LAPTOP


@pytest.fixture
def own_world(django_db_setup) -> World:  # noqa: ANN001
    return committed(fresh_world, "Rating")


def test_a_thumbs_down_with_a_comment_lands_in_the_review_queue(sized_page, own_world, asgi_server, fake_anthropic):
    page = sized_page
    fake_anthropic.reply = "The car park is on level -2."
    log_in(page, asgi_server.host_url(own_world.tenant.subdomain), own_world.member.email, next_path="/chat/")
    expect(page.locator("#chat[data-ready=true]")).to_have_count(1)

    page.fill("#message", "Where do I park?")
    page.keyboard.press("Enter")
    feedback = page.locator(".msg.assistant form.feedback").last
    expect(feedback).to_be_visible(timeout=90_000)  # the saved answer's rendering carries the form
    feedback.locator('input[name="comment"]').fill("It moved to level -3 in May.")
    feedback.locator('button[data-rating="down"]').click()
    expect(feedback.locator(".feedback-status")).to_have_text("Thank you: your feedback was sent.")
    expect(feedback.locator('button[data-rating="down"]')).to_have_attribute("aria-pressed", "true")

    with tenant_context(own_world.tenant):
        action = AgentAction.objects.get(agent_type="chat", user=own_world.member)
        queue = list(agent_actions_matching(criteria={"feedback": "down_unreviewed"}).values_list("id", flat=True))
    assert (action.feedback, action.feedback_comment) == ("down", "It moved to level -3 in May.")
    assert queue == [action.id]

    page.reload()
    again = page.locator(".msg.assistant form.feedback").last
    expect(again.locator('button[data-rating="down"]')).to_have_attribute("aria-pressed", "true")
    expect(again.locator('input[name="comment"]')).to_have_value("It moved to level -3 in May.")
