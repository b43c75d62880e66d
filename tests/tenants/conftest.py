"""Team and account tests: run the jobs a request defers (mail is sent by jobs) and read the mail."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.core import mail


@pytest.fixture
def jobs(django_capture_on_commit_callbacks) -> Callable[[], object]:  # noqa: ANN001
    """``with jobs(): client.post(...)``: the jobs the block defers run as if it had committed."""

    @contextmanager
    def run() -> Iterator[None]:
        with django_capture_on_commit_callbacks(execute=True):
            yield

    return run


def sent_to(address: str) -> list[mail.EmailMessage]:
    return [message for message in mail.outbox if address in message.to]


def link_in(message: mail.EmailMessage, pattern: str) -> str:
    """The first link in the message's text (and the same one in its HTML) matching ``pattern``."""
    found = re.search(pattern, message.body)
    assert found, f"no link matching {pattern!r} in:\n{message.body}"
    html = message.alternatives[0][0]
    assert found.group(0) in html
    return found.group(0)
