"""Keyboard shortcuts and dark mode (issue 25 #23) in Chromium at 390 and 1280 px: "n" (or
Ctrl/Cmd+Shift+O) starts a new chat, "/" goes to search, "?" lists the shortcuts, none of them while
typing; the pages follow the system's dark preference and every text stays readable (WCAG AA)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import chat_over_sse, document_add, fits_width, log_in, shot

HANDBOOK = (
    "Travel handbook\n\nTrain tickets are booked through the travel desk at least a week ahead.\n\n"
    "Hotel stays above two nights need a manager's approval in the expenses tool."
)

# Every element with text of its own, visible: its colour against the backgrounds painted under it
# (composited up from the page), as WCAG 2 computes contrast. Large text (24 px, or 18.66 px bold)
# needs 3:1, the rest 4.5:1. Returns the ones below, and the body's colours.
CONTRAST = """
() => {
  const parse = (value) => {
    const inside = (value.match(/rgba?\\(([^)]+)\\)/) || [null, "0,0,0,0"])[1];
    const parts = inside.split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return {r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1};
  };
  const over = (top, under) => ({
    r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
    b: top.b * top.a + under.b * (1 - top.a), a: 1,
  });
  const luminance = ({r, g, b}) => {
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const ratio = (x, y) => {
    const [a, b] = [luminance(x), luminance(y)].sort((p, q) => q - p);
    return (a + 0.05) / (b + 0.05);
  };
  const backdrop = (element) => {
    const chain = [];
    for (let e = element; e; e = e.parentElement) chain.unshift(e);
    const paint = (under, e) => over(parse(getComputedStyle(e).backgroundColor), under);
    return chain.reduce(paint, {r: 255, g: 255, b: 255, a: 1});
  };
  const low = [];
  for (const element of document.querySelectorAll("body *")) {
    if (["SCRIPT", "STYLE", "OPTION", "SELECT", "TEXTAREA", "NOSCRIPT"].includes(element.tagName)) continue;
    const own = [...element.childNodes].some((node) => node.nodeType === 3 && node.textContent.trim());
    if (!own || !element.getClientRects().length || element.closest("[hidden], :disabled, .skip-link")) continue;
    const style = getComputedStyle(element);
    if (style.visibility !== "visible" || Number(style.opacity) < 1) continue;
    const background = backdrop(element);
    const contrast = ratio(over(parse(style.color), background), background);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (contrast < (large ? 3 : 4.5)) {
      const what = `${element.tagName.toLowerCase()}.${element.className} "${element.textContent.trim().slice(0, 40)}"`;
      low.push(`${what}: ${contrast.toFixed(2)} (${style.color} on ${JSON.stringify(background)})`);
    }
  }
  const body = getComputedStyle(document.body);
  return {low, background: body.backgroundColor, color: body.color,
          body: ratio(parse(body.color), backdrop(document.body))};
}
"""


# A shortcut that leads to another page: on a loaded machine the next page may take longer than
# expect's 5 s to arrive.
NAVIGATION = 20_000


def readable(page: Page) -> dict[str, Any]:
    found = page.evaluate(CONTRAST)
    assert found["body"] >= 4.5, found
    assert not found["low"], f"{page.url}: text below WCAG AA contrast:\n" + "\n".join(found["low"])
    return found


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_follows_the_system_colour_scheme_and_stays_readable(sized_page, world, asgi_server, scheme):
    page = sized_page
    page.emulate_media(color_scheme=scheme)
    base = asgi_server.host_url(world.tenant.subdomain)
    document_add(asgi_server, world, "Travel handbook", HANDBOOK)
    conversation = chat_over_sse(asgi_server, world, "How are train tickets booked?", as_member=True)[0][
        "conversation_id"
    ]

    for public in ("/", "/signup/"):  # the public site shares the stylesheet
        page.goto(f"http://localhost:{asgi_server.port}{public}")
        readable(page)
        fits_width(page)
    page.goto(f"{base}/login/")
    login = readable(page)
    dark = scheme == "dark"
    assert (login["background"] == "rgb(246, 247, 251)") != dark, login
    assert (login["color"] == "rgb(29, 35, 48)") != dark, login
    log_in(page, base, world.member.email)
    for path, name in [
        ("/?q=how+do+I+book+a+train", "search"),
        (f"/chat/{conversation}/", "chat"),
        ("/members/", "members"),
        ("/usage/", "usage"),
        ("/billing/", "billing"),
        ("/account/", "account"),
    ]:
        page.goto(f"{base}{path}")
        page.wait_for_load_state("load")
        readable(page)
        fits_width(page)
        shot(page, f"{scheme}-{name}")
    page.locator(".account details.menu summary").click()
    readable(page)


def test_keyboard_shortcuts_work_outside_inputs_only(sized_page, world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(world.tenant.subdomain)
    log_in(page, base, world.member.email)
    search = page.locator("#query")

    page.keyboard.press("/")
    expect(search).to_be_focused()
    expect(search).to_have_value("")  # the key went to the shortcut, not into the box

    page.keyboard.type("n?/")  # typing: no shortcut fires
    expect(search).to_have_value("n?/")  # every key typed: no shortcut took one
    expect(page).to_have_url(f"{base}/")
    expect(page.locator("#shortcuts")).to_be_hidden()

    page.locator("h1").first.click()  # out of the box
    page.keyboard.press("?")
    help_box = page.locator("#shortcuts")
    expect(help_box).to_be_visible()
    for key in ("n", "/", "?"):
        expect(help_box.locator("kbd", has_text=key).first).to_be_visible()
    fits_width(page)
    readable(page)
    shot(page, "shortcuts", full_page=False)
    page.keyboard.press("Escape")
    expect(help_box).to_be_hidden()

    page.keyboard.press("n")
    expect(page).to_have_url(f"{base}/chat/", timeout=NAVIGATION)
    page.wait_for_load_state("load")  # its scripts have run
    composer = page.locator("#message")
    composer.click()
    page.keyboard.type("n/?")
    expect(composer).to_have_value("n/?")  # every key typed: no shortcut took one
    expect(page).to_have_url(f"{base}/chat/")
    expect(page.locator("#shortcuts")).to_be_hidden()

    page.locator("h1, h2").first.click()
    page.keyboard.press("/")  # the chat page's own search: conversations
    expect(page.locator("#conversation-search")).to_be_focused()
    expect(page.locator("#conversation-search")).to_have_value("")

    page.goto(f"{base}/usage/")
    page.keyboard.press("/")  # no search box here: the documents page's, focused
    expect(page).to_have_url(f"{base}/", timeout=NAVIGATION)
    expect(page.locator("#query")).to_be_focused(timeout=NAVIGATION)


def test_single_key_shortcuts_can_be_turned_off_and_the_chord_still_starts_a_chat(sized_page, world, asgi_server):
    page = sized_page
    base = asgi_server.host_url(world.tenant.subdomain)
    log_in(page, base, world.member.email)

    page.keyboard.press("?")
    page.locator("#shortcuts-single-keys").uncheck()
    page.keyboard.press("Escape")
    page.reload()
    for key in ("n", "/", "?"):
        page.keyboard.press(key)
    expect(page).to_have_url(f"{base}/")
    expect(page.locator("#query")).not_to_be_focused()
    expect(page.locator("#shortcuts")).to_be_hidden()

    page.keyboard.press("Control+Shift+O")
    expect(page).to_have_url(f"{base}/chat/", timeout=NAVIGATION)
    page.wait_for_load_state("load")  # its scripts have run
    # The account menu opens the list too: where they are turned back on.
    page.locator(".account details.menu summary").click()
    page.get_by_role("button", name="Keyboard shortcuts").click()
    expect(page.locator("#shortcuts")).to_be_visible()
    page.locator("#shortcuts-single-keys").check()
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()
    page.locator("main h1, main h2").first.click()  # out of the composer, which the chat page focuses
    page.keyboard.press("/")
    expect(page.locator("#conversation-search")).to_be_focused()
