"""What a plain API request costs the database: every statement the server's psycopg connections
send for one token-authenticated ``GET /api/documents/`` on a tenant host, the search_path and
pool statements included."""

from __future__ import annotations

import os
import resource
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from asgiref.sync import AsyncToSync, SyncToAsync
from django.db import connections
from psycopg_pool import ConnectionPool

from core.platform.database.base import check_only_when_readable
from tests.processes import wait_until
from tests.tenants.test_isolation import make_document

pytestmark = pytest.mark.django_db

# The domain with its tenant, the token with its user and membership (both schema-qualified,
# tenants.credentials), the tenant's search_path, the list.
MAX_ROUND_TRIPS = 4


@contextmanager
def statements_sent_by_other_threads() -> Iterator[list[str]]:
    """Every statement a psycopg cursor executes outside this (the test's) thread, in order."""
    sent: list[str] = []
    test_thread = threading.get_ident()
    execute = psycopg.Cursor.execute

    def counted(self, query, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if threading.get_ident() != test_thread:
            sent.append(query if isinstance(query, str) else repr(query))
        return execute(self, query, *args, **kwargs)

    psycopg.Cursor.execute = counted  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        psycopg.Cursor.execute = execute  # type: ignore[method-assign]


def pool_in_use() -> int:
    """Pooled connections lent out to threads other than the test's own."""
    stats = connections["default"].pool.get_stats()
    held_here = int(connections["default"].connection is not None)
    return int(stats["pool_size"] - stats["pool_available"]) - held_here


def test_a_token_request_for_the_document_list_makes_at_most_four_round_trips(live_worlds, asgi_server):
    world = live_worlds["acme"]
    headers = {"Host": "acme.localhost", "Authorization": f"Token {world.member_token}"}
    url = f"{asgi_server.url}/api/documents/"
    # What other threads of this process hold when the test starts (in the suite, other files' live
    # servers may keep one): a request is over when the pool is back to that.
    before = pool_in_use()

    def request_over() -> bool:
        return pool_in_use() <= before

    with httpx.Client(timeout=30) as client:
        assert client.get(url, headers=headers).status_code == 200  # connections opened, caches warm
        wait_until(request_over, timeout=10, every=0.01, what="the request's connection back in the pool")
        per_request = []
        for _ in range(3):
            with statements_sent_by_other_threads() as sent:
                response = client.get(url, headers=headers)
                wait_until(request_over, timeout=10, every=0.01, what="the request's connection back in the pool")
            assert response.status_code == 200
            per_request.append(sent)
    for sent in per_request:
        assert len(sent) <= MAX_ROUND_TRIPS, "\n".join(sent)


@contextmanager
def hand_offs_to_threads() -> Iterator[list[tuple[str, str]]]:
    """Every crossing between the event loop and a thread (asgiref), as (direction, function)."""
    handed: list[tuple[str, str]] = []
    originals = {SyncToAsync: SyncToAsync.__call__, AsyncToSync: AsyncToSync.__call__}

    def counting(kind: type, direction: str) -> Any:
        original = originals[kind]

        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            function = getattr(self, "func", None) or getattr(self, "awaitable", None)
            handed.append((direction, getattr(function, "__qualname__", repr(function))))
            return original(self, *args, **kwargs)

        return call

    SyncToAsync.__call__ = counting(SyncToAsync, "to a thread")  # type: ignore[method-assign]
    AsyncToSync.__call__ = counting(AsyncToSync, "to the loop")  # type: ignore[method-assign]
    try:
        yield handed
    finally:
        SyncToAsync.__call__ = originals[SyncToAsync]  # type: ignore[method-assign]
        AsyncToSync.__call__ = originals[AsyncToSync]  # type: ignore[method-assign]


def test_a_plain_request_hands_its_middleware_and_view_to_a_thread_once(live_worlds, asgi_server):
    """Django's ASGI handler ran the middleware in async mode: each sync one a hand-off there and
    back, 13 a request. core.platform.asgi_handler runs the chain in one: the request_started
    signal, the chain with the view, and response.close() are the three."""
    world = live_worlds["acme"]
    headers = {"Host": "acme.localhost", "Authorization": f"Token {world.member_token}"}
    before = pool_in_use()
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{asgi_server.url}/api/documents/", headers=headers).status_code == 200
        wait_until(lambda: pool_in_use() <= before, timeout=10, every=0.01, what="the first request over")
        with hand_offs_to_threads() as handed:
            response = client.get(f"{asgi_server.url}/api/documents/", headers=headers)
            wait_until(lambda: pool_in_use() <= before, timeout=10, every=0.01, what="the request over")

    assert response.status_code == 200
    assert [direction for direction, _ in handed] == ["to a thread"] * 3, handed
    assert any(function.endswith("get_response") for _, function in handed), handed


@pytest.mark.parametrize("documents, pages", [(0, 1), (19, 1), (20, 1), (21, 2)])
def test_the_first_page_reports_the_count_whether_or_not_it_was_counted(acme, documents, pages):
    for i in range(documents):
        make_document(acme, title=f"Doc {i}")

    body = acme.client(acme.member_token).get("/api/documents/").json()

    assert body["count"] == documents
    assert len(body["results"]) == min(documents, 20)
    assert (body["next"] is not None) == (pages > 1)
    if pages > 1:
        second = acme.client(acme.member_token).get("/api/documents/?page=2").json()
        assert second["count"] == documents and len(second["results"]) == documents - 20


def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout():
    settings = connections["default"].get_connection_params()
    check = check_only_when_readable(ConnectionPool.check_connection)
    with ConnectionPool(kwargs={**settings, "autocommit": True}, min_size=1, max_size=1, check=check) as pool:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(**settings, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)"
            wait_until(lambda: admin.execute(gone, [pid]).fetchone()[0], timeout=10, every=0.01, what="backend ended")
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid != pid


class _Socket:
    """What the check reads of a psycopg connection: its state and its socket's descriptor."""

    closed = False
    broken = False

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_the_checkout_check_works_on_a_descriptor_past_1024():
    """A web process with hundreds of open sockets (streams, Redis, the pool) hands the pool
    descriptors past select()'s limit of 1024; the check must still answer, not raise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = 2_000
    if hard != resource.RLIM_INFINITY and hard <= high:
        pytest.skip(f"this machine allows {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, high + 1), hard))
    ours, theirs = socket.socketpair()
    try:
        os.dup2(ours.fileno(), high)
        checked: list[int] = []
        check = check_only_when_readable(lambda connection: checked.append(connection.fileno()))

        check(_Socket(high))  # nothing to read: no round trip
        theirs.sendall(b"N")  # the server said something (a notice, or it closed)
        check(_Socket(high))

        assert checked == [high]
    finally:
        os.close(high)
        ours.close()
        theirs.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
