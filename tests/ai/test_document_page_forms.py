"""The documents page's upload form without JavaScript: a refusal renders the page again with what was typed."""

from __future__ import annotations


def test_a_refused_plain_upload_shows_the_page_with_what_was_typed(acme):
    member = acme.session_client(acme.member)

    refused = member.post("/documents/upload/", {"title": "", "content": "The canteen opens at noon & closes at two."})

    assert refused.status_code == 400
    body = refused.content.decode()
    assert "A title is required." in body
    assert ">The canteen opens at noon &amp; closes at two.</textarea>" in body
