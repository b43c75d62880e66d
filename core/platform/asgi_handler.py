"""Django's ASGI handler with the middleware chain run as one sync call: one thread hand-off a request.

Django's own handler runs the middleware in async mode. Each sync-only middleware and each
``MiddlewareMixin`` one (Django's own, django-tenants', allauth's) then costs a hand-off to the
request's thread and back, and a plain ``GET /api/documents/`` made 13 of them: it cost 1.5-1.7x
the server CPU of the same app under a sync WSGI server (tests/benchmarks/bench_request.py). Every
view of Strata is sync (the SSE answer is a sync view returning an async stream), so here the chain
is loaded in sync mode, exactly as under WSGI, and called once on the request's thread
(``thread_sensitive``: the same thread whose database connection ``response.close()`` later gives
back). An async view would still work: Django's sync path runs it with ``async_to_sync``, which
hands it to this server's event loop. The streaming body (an async iterator) is sent by the
handler on the event loop, as before.
"""

from __future__ import annotations

from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler's: it loads the chain in async mode
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # BaseHandler.get_response: the urlconf, the chain, the request's closers and the log of a
        # 4xx/5xx, all on the request's thread.
        response: HttpResponseBase = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        return response


def one_hop_asgi_application() -> Any:
    """What ``django.core.asgi.get_asgi_application`` does, with the one-hop handler."""
    django.setup(set_prefix=False)
    return OneHopASGIHandler()
