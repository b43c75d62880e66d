"""A flood of a noisy tenant's slow work, and of anonymous logins from many loopback addresses, as
plain HTTP (no Django here): run in a process of its own so its threads never slow the client that
measures the quiet tenant (tests/core/fair_shares.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.processes import TLS

FLOOD_KINDS = ("sse_chats", "slow_summaries", "anonymous_logins", "mixed")


@dataclass
class Answers:
    """What a set of requests got: statuses, and the refusals that did not say when to come back."""

    statuses: list[int] = field(default_factory=list)
    without_retry_after: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, list]:
        return {"statuses": self.statuses, "without_retry_after": self.without_retry_after, "failures": self.failures}

    def __setstate__(self, state: dict[str, list]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def add(self, response: httpx.Response) -> None:
        with self._lock:
            self.statuses.append(response.status_code)
            if response.status_code in (429, 503) and "retry-after" not in response.headers:
                self.without_retry_after.append(response.status_code)

    def fail(self, exc: Exception) -> None:
        with self._lock:
            self.failures.append(repr(exc))


def _sse_chat(url: str, host: str, key: str, answers: Answers) -> None:
    headers = {"Host": host, "Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    try:
        question = {"message": "Tell me a long story."}
        with httpx.stream(
            "POST", f"{url}/api/chat/", json=question, headers=headers, timeout=60, verify=TLS
        ) as response:
            for _ in response.iter_lines():
                pass
            answers.add(response)
    except httpx.HTTPError as exc:
        answers.fail(exc)


def _summary(url: str, host: str, key: str, document_id: int, answers: Answers) -> None:
    headers = {"Host": host, "Authorization": f"Bearer {key}"}
    try:
        answers.add(
            httpx.post(f"{url}/api/documents/{document_id}/summarise/", headers=headers, timeout=60, verify=TLS)
        )
    except httpx.HTTPError as exc:
        answers.fail(exc)


def _login(url: str, host: str, number: int, answers: Answers) -> None:
    # Each from its own loopback address, as a botnet's would come from many: no per-address limit helps.
    transport = httpx.HTTPTransport(local_address=f"127.0.{number // 250}.{number % 250 + 2}", verify=TLS)
    try:
        with httpx.Client(transport=transport, timeout=60) as client:
            response = client.post(
                f"{url}/api/auth/login/",
                json={"email": f"nobody{number}@example.com", "password": "not-a-password"},
                headers={"Host": host},
            )
        answers.add(response)
    except httpx.HTTPError as exc:
        answers.fail(exc)


def flood_jobs(kind: str, url: str, host: str, keys: list[str], document_id: int, answers: Answers) -> list[Callable]:
    """The requests of one kind of flood (``mixed``: a share of each), as callables."""
    chats = [lambda i=i: _sse_chat(url, host, keys[i % len(keys)], answers) for i in range(30)]
    summaries = [lambda i=i: _summary(url, host, keys[i % len(keys)], document_id, answers) for i in range(20)]
    logins = [lambda i=i: _login(url, host, i, answers) for i in range(40)]
    return {
        "sse_chats": chats,
        "slow_summaries": summaries,
        "anonymous_logins": logins,
        "mixed": chats + summaries + logins,
    }[kind]


def flood_run(kind: str, url: str, host: str, keys: list[str], document_id: int) -> Answers:
    """Every request of the flood at once; what they got. The flooding clients run below normal
    priority: in the world they are on other machines, and what is measured is how the server
    shares its own cores, not how the clients' threads crowd the two this machine has."""
    os.nice(10)
    answers = Answers()
    jobs = flood_jobs(kind, url, host, keys, document_id, answers)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()
    return answers
