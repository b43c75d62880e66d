"""The ASGI handler (core.platform.asgi_handler): a request's sync work on one thread, kept for the
next request, and never lent while a call of an earlier request still runs on it."""

from __future__ import annotations

import threading

import httpx
import pytest

from core.platform.asgi_handler import RequestThreads, ThreadLease
from tests.processes import wait_until

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


def test_a_lease_keeps_one_thread_for_its_calls_until_given_back():
    threads = RequestThreads(keep=2)
    lease = ThreadLease(threads)
    assert lease.thread is None  # nothing borrowed before the first call

    names = [lease.submit(lambda: threading.current_thread().name).result(5) for _ in range(3)]
    assert len(set(names)) == 1
    kept = lease.thread
    lease.give_back()

    assert lease.thread is None
    assert threads.borrow() is kept  # back with the idle ones
    kept.shutdown()


def test_a_streaming_answer_holds_no_thread_while_it_streams(live_worlds, asgi_server, fake_anthropic, settings):
    """Six SSE answers streaming at once hold no request thread (each is given back when its
    response is made); each response's close still runs once its stream ends."""
    from django.core.signals import request_finished

    from config.asgi import django_asgi_app

    class Counting(RequestThreads):
        lent = 0

        def borrow(self):  # noqa: ANN202
            self.lent += 1
            return super().borrow()

        def give_back(self, thread):  # noqa: ANN001, ANN202
            self.lent -= 1
            super().give_back(thread)

    settings.CHAT_MAX_STREAMS_PER_USER = 10
    world = live_worlds["acme"]
    headers = {"Host": "acme.localhost", "Authorization": f"Token {world.member_token}"}
    fake_anthropic.reply = " ".join(f"w{i}" for i in range(20))
    fake_anthropic.token_delay = 0.1
    streams, started, finished = 6, threading.Barrier(7, timeout=30), []
    counting, kept = Counting(), django_asgi_app.threads
    request_finished.connect(lambda sender, **kwargs: finished.append(sender), weak=False, dispatch_uid="test-finished")

    def chat(results: list[str]) -> None:
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{asgi_server.url}/api/chat/", headers=headers, json={"message": "hi"}) as response,
        ):
            events = (line[len("event: ") :] for line in response.iter_lines() if line.startswith("event: "))
            results.append(next(events))
            results.append(next(events))  # the first token: it streams
            started.wait()
            started.wait()  # counted
            results.extend(events)

    django_asgi_app.threads = counting
    results: list[list[str]] = [[] for _ in range(streams)]
    clients = [threading.Thread(target=chat, args=(result,)) for result in results]
    try:
        for client in clients:
            client.start()
        started.wait()
        lent_while_streaming = counting.lent
        finished_while_streaming = len(finished)
        started.wait()
        for client in clients:
            client.join(30)
        # A client may see its last event before the server closes its response.
        wait_until(lambda: len(finished) == streams and counting.lent == 0, timeout=10, what="every stream closed")
    finally:
        django_asgi_app.threads = kept
        request_finished.disconnect(dispatch_uid="test-finished")

    assert lent_while_streaming == 0
    assert finished_while_streaming == 0
    assert [(result[0], result[1], result[-1]) for result in results] == [("start", "token", "done")] * streams
