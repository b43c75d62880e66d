"""Django's ASGI handler with the middleware chain run as one sync call, on a thread kept for the next request.

Django's own handler runs the middleware in async mode. Each sync-only middleware and each
``MiddlewareMixin`` one (Django's own, django-tenants', allauth's) then costs a hand-off to the
request's thread and back: a plain ``GET /api/documents/`` made 12 of them. And each request got a
thread of its own, started for it and joined by another thread started for that, two thread
starts a request. Together they made the request cost 1.5-1.6x the server CPU of the same app
under a sync WSGI server (tests/benchmarks/bench_request.py).

Every view of Strata is sync (the SSE answer is a sync view returning an async stream), so here:

* the chain is loaded in sync mode, exactly as under WSGI, and called once on the request's thread;
* the request's thread is lent from ``RequestThreads``, threads kept between requests as a
  WSGI server keeps its own. Thread-sensitive calls of one request (the request_started signal,
  the chain, ``response.close()`` which gives the connection back) run on its one thread, as
  Django requires, and per-thread state is what the middleware set for this request, as under
  any threaded WSGI server.
* a streaming response (an SSE answer, an export) gives its thread back as soon as it is made:
  its body is sent on the event loop for as long as it streams, and a thread held idle for that
  long would make every open stream a thread (200 answers streaming, 200 threads, each started
  and ended for its request). Its pooled connection was given back before (admission's
  StreamingConnectionsReleaseMiddleware), so its ``close()`` at the end of the stream borrows
  whichever thread is idle: it sends ``request_finished``, which finds no connection to close.

An async view would still work: Django's sync path runs it with ``async_to_sync``, which hands it
to this server's event loop. A streaming body (an async iterator) is sent on the event loop, as
before.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

import django
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest
from django.http.response import HttpResponseBase

# Idle request threads kept for the next requests (more in flight at once start threads of their
# own, which end when their request does if this many are already idle).
IDLE_THREADS_KEPT = 32


class _RequestThread(ThreadPoolExecutor):
    """One thread; knows whether it still runs something (a request whose client went away
    leaves its sync call running, and the thread is not lent again until that call ends)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self._last: Future[Any] | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._last = super().submit(fn, *args, **kwargs)
        return self._last

    @property
    def idle(self) -> bool:
        return self._last is None or self._last.done()


class RequestThreads:
    """Threads lent to one request at a time, on the event loop's own thread (no lock needed)."""

    def __init__(self, keep: int = IDLE_THREADS_KEPT) -> None:
        self._keep = keep
        self._idle: list[_RequestThread] = []

    def borrow(self) -> _RequestThread:
        return self._idle.pop() if self._idle else _RequestThread()

    def give_back(self, thread: _RequestThread) -> None:
        if thread.idle and len(self._idle) < self._keep:
            self._idle.append(thread)
        else:
            thread.shutdown(wait=False)  # ends when its last call does


class ThreadLease(Executor):
    """The executor of one request's thread-sensitive calls: a thread borrowed at its first call
    and kept for the calls after it, until ``give_back``. One call at a time, as
    ThreadSensitiveContext requires: the request awaits each."""

    def __init__(self, threads: RequestThreads) -> None:
        self._threads = threads
        self._thread: _RequestThread | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self._thread is None:
            self._thread = self._threads.borrow()
        return self._thread.submit(fn, *args, **kwargs)

    @property
    def thread(self) -> _RequestThread | None:
        return self._thread

    def give_back(self) -> None:
        if self._thread is not None:
            self._threads.give_back(self._thread)
            self._thread = None


# The lease of the request being handled (a task's context: each request has its own).
_lease: ContextVar[ThreadLease] = ContextVar("request_thread_lease")


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler's: it loads the chain in async mode
        self.load_middleware(is_async=False)
        self.threads = RequestThreads()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        lease = ThreadLease(self.threads)
        token = _lease.set(lease)
        try:
            async with ThreadSensitiveContext(executor=lease):
                await self.handle(scope, receive, send)
        finally:
            _lease.reset(token)
            lease.give_back()

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # BaseHandler.get_response: the urlconf, the chain, the request's closers and the log of a
        # 4xx/5xx, all on the request's thread.
        response: HttpResponseBase = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        if response.streaming:
            _lease.get().give_back()  # its body streams on the event loop (see the module's docstring)
        return response


def one_hop_asgi_application() -> Any:
    """What ``django.core.asgi.get_asgi_application`` does, with the one-hop handler."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()
