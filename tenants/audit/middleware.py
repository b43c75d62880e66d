"""The request's client address, for audit entries written by services that are not handed the request."""

from __future__ import annotations

import contextvars
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from core.platform.client import client_ip

# Set for the length of one request (and copied into the sync threads it hops to); None elsewhere
# (jobs, commands, the shell), where an entry has no address.
request_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_request_ip", default=None)


class AuditContextMiddleware:
    """Notes the client address (``core.platform.client``'s rule) so that ``audit_record`` can
    give every entry its IP without each service taking the request as an argument."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        token = request_ip.set(client_ip(request) or None)
        try:
            return self.get_response(request)
        finally:
            request_ip.reset(token)
