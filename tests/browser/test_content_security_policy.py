"""Every page works under the Content-Security-Policy (no 'unsafe-inline'): Chromium reports no violation."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db]


@pytest.fixture
def watched_page(browser):
    """A page that records every CSP violation: console errors and securitypolicyviolation events."""
    context = browser.new_context()
    context.add_init_script(
        "window.__violations = [];"
        "document.addEventListener('securitypolicyviolation', e => window.__violations.push("
        " `${e.violatedDirective} ${e.blockedURI} at ${e.documentURI}:${e.lineNumber}`));"
    )
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text) if message.type == "error" else None)
    page.console_errors = console
    yield page
    context.close()


def violations(page) -> list[str]:
    reported = page.evaluate("window.__violations")
    return reported + [text for text in page.console_errors if "Content Security Policy" in text]


def test_the_policy_forbids_inline_code_and_framing(live_worlds, asgi_server):
    import httpx

    response = httpx.get(f"{asgi_server.url}/login/", headers={"Host": f"acme.localhost:{asgi_server.port}"})
    policy = response.headers["Content-Security-Policy"]
    # Directives in whatever order the header lists them (it varies between processes).
    directives = dict(part.strip().partition(" ")[::2] for part in policy.split(";") if part.strip())

    assert directives["script-src"] == directives["style-src"] == "'self'"
    # Billing forms redirect to Stripe's Checkout and portal pages, and nowhere else.
    assert directives["form-action"] == "'self' https://checkout.stripe.com https://billing.stripe.com"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_the_tenant_pages_and_admin_run_without_a_policy_violation(watched_page, live_worlds, asgi_server):
    page = watched_page
    globex = live_worlds["globex"]
    base = asgi_server.host_url("globex")

    log_in(page, base, globex.owner.email)  # the documents page, its script running
    page.goto(f"{base}/chat/")
    expect(page.locator("#message")).to_be_visible()
    expect(page.locator("#chat")).to_have_attribute("data-ready", "true")  # its module ran
    page.goto(f"{base}/usage/")
    expect(page.get_by_role("heading", name="Usage")).to_be_visible()
    page.wait_for_load_state("load")  # its deferred scripts (Chart.js, usage.js) have run
    page.goto(f"{base}/admin/")
    expect(page.get_by_text("Manage your organisation")).to_be_visible()
    page.goto(f"{base}/admin/ai/prompttemplate/add/")
    expect(page.locator("#id_system_prompt")).to_be_visible()
    page.goto(f"{base}/admin/ai/agentaction/")

    assert violations(page) == []


def test_the_public_pages_and_the_operator_login_run_without_a_policy_violation(watched_page, asgi_server):
    page = watched_page
    base = f"http://localhost:{asgi_server.port}"

    page.goto(f"{base}/")
    page.goto(f"{base}/signup/")
    page.fill("#organisation", "Csp Check")
    page.fill("#subdomain", "x")  # too short: the API's error is shown by the page's script
    page.fill("#email", "csp@example.com")
    page.fill("#password", PASSWORD)
    page.evaluate("document.getElementById('subdomain').removeAttribute('pattern')")
    page.click("button[type=submit]")
    expect(page.locator("#signup .field-error")).not_to_have_count(0)  # shown by the page's script
    page.goto(f"{base}/admin/login/")
    expect(page.locator("#id_username")).to_be_visible()

    assert violations(page) == []
