"""Markdown of chat answers as safe HTML: markdown-it-py renders (raw HTML in the text is escaped,
never passed through), then nh3 (Ammonia) keeps only an allow-list of tags and attributes.

The model's text is untrusted (a document can carry a prompt injection), so no script, no event
handler, no style and no image survives: an image URL would send data to another server the
moment the page shows it. Links keep http(s) and mailto only, and open without a referrer.
"""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt

_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}


@functools.cache
def _parser() -> MarkdownIt:
    # "html": False makes markdown-it escape any HTML in the text instead of copying it.
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def markdown_html(text: str) -> str:
    """``text`` (Markdown, untrusted) as sanitised HTML, safe to insert into a page."""
    rendered = _parser().render(text or "")
    return nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        # Only markdown-it's own "language-xyz" classes on code blocks.
        attribute_filter=_keep_language_class,
    )


def _keep_language_class(tag: str, attribute: str, value: str) -> str | None:
    if tag == "code" and attribute == "class":
        return value if value.startswith("language-") and value.replace("-", "").isalnum() else None
    return value
