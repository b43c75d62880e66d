"""The ASGI handler (core.platform.asgi_handler): a request's sync work on one thread, kept for the
next request, and never lent while a call of an earlier request still runs on it."""

from __future__ import annotations

import threading

import httpx
import pytest

from core.platform.asgi_handler import RequestThreads

pytestmark = pytest.mark.django_db


def test_a_returned_thread_is_lent_to_the_next_request():
    threads = RequestThreads(keep=2)
    first = threads.borrow()
    first.submit(lambda: None).result(5)
    threads.give_back(first)

    assert threads.borrow() is first
    first.shutdown()


def test_a_thread_still_running_a_call_is_not_lent_again():
    threads = RequestThreads(keep=2)
    busy = threads.borrow()
    release = threading.Event()
    call = busy.submit(release.wait, 10)  # a request whose client went away: its view still runs
    threads.give_back(busy)

    other = threads.borrow()
    assert other is not busy
    release.set()
    assert call.result(5) is True
    other.shutdown()


def test_idle_threads_beyond_the_bound_end():
    threads = RequestThreads(keep=1)
    lent = [threads.borrow() for _ in range(3)]
    for thread in lent:
        thread.submit(lambda: None).result(5)
        threads.give_back(thread)

    assert threads.borrow() is lent[0]
    assert all(thread._shutdown for thread in lent[1:])
    lent[0].shutdown()


def test_requests_one_after_another_run_on_one_kept_thread(live_worlds, asgi_server):
    from config.asgi import django_asgi_app

    world = live_worlds["acme"]
    headers = {"Host": "acme.localhost", "Authorization": f"Token {world.member_token}"}
    names: list[str] = []
    get_response = django_asgi_app.get_response

    def recording(request):  # noqa: ANN001, ANN202
        names.append(threading.current_thread().name)
        return get_response(request)

    django_asgi_app.get_response = recording
    try:
        with httpx.Client(timeout=30) as client:
            statuses = [client.get(f"{asgi_server.url}/api/documents/", headers=headers).status_code for _ in range(20)]
    finally:
        del django_asgi_app.get_response

    assert statuses == [200] * 20
    assert len(names) == 20
    assert len(set(names)) == 1, names
