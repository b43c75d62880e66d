"""FakeStripe: the resources behind one HTTP server on 127.0.0.1, and the request pipeline every
call goes through (request log, injected failures, routing, API key, idempotency keys)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from requests.structures import CaseInsensitiveDict

from tests.fakes.stripe.billing_portal import BillingPortal
from tests.fakes.stripe.checkout import CheckoutSessions
from tests.fakes.stripe.meter_events import MeterEvents
from tests.fakes.stripe.wire import (
    Json,
    RecordedRequest,
    Reply,
    Route,
    StripeError,
    copy,
    error_body,
    new_id,
    parse_form,
)
from tests.fakes.threaded_server import ThreadedFake

# fail_next entries: 0 closes the socket before the request is handled (nothing happened);
# -1 handles it fully (state changes, idempotent result stored) and then closes the socket,
# which is the "response lost on the way back" case that idempotency keys exist for.
DROP = 0
DROP_AFTER_COMMIT = -1

_Handler = Callable[[Json, str, "re.Match[str]"], Reply]


class _RequestHandler(BaseHTTPRequestHandler):
    # Headers and body go out in separate writes; without TCP_NODELAY each call waits ~40 ms for a delayed ACK.
    disable_nagle_algorithm = True
    # HTTP/1.1 so the SDK's requests session reuses connections as it does against Stripe.
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        # Read the whole body even when we then drop the socket, so the client is not left mid-write.
        body = self.rfile.read(length).decode("utf-8") if length else ""
        split = urlsplit(self.path)
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(dict(self.headers.items()))
        reply = self.server.fake._dispatch(method, split.path, split.query, body, headers)
        if reply is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = reply.raw if reply.raw is not None else json.dumps(reply.body, indent=2).encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Request-Id", new_id("req_", 14))
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeStripe) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _RequestHandler)


class FakeStripe(ThreadedFake, CheckoutSessions, BillingPortal, MeterEvents):
    """An HTTP server on 127.0.0.1 that answers the real `stripe` SDK like Stripe's v1 API would.

    Failure switches (set them between calls; they apply to matched requests only):
      fail_next: statuses for the next N requests, consumed in order: 5xx -> api_error,
        429 -> rate limit, DROP (0) -> close the socket unanswered, DROP_AFTER_COMMIT (-1)
        -> handle the request then close the socket unanswered.
      fail_routes: None (all routes) or path prefixes, matched on whole path segments.
      outage: while True every matched request answers outage_status (DROP allowed).
      should_retry_header: None sends no `Stripe-Should-Retry` on injected failures;
        True/False sends it, and the SDK obeys it over its status-code rules.
      latency: seconds slept before each request is answered.
    """

    def __init__(
        self, *, api_key: str | None = None, webhook_url: str | None = None, webhook_secret: str | None = None
    ) -> None:
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self._routes = self._collect_routes()
        super().__init__()

    def _collect_routes(self) -> list[tuple[Route, _Handler]]:
        """Every handler the resources marked with `@route`, bound to this fake."""
        routes: list[tuple[Route, _Handler]] = []
        seen: set[str] = set()
        for cls in type(self).__mro__:
            for name, member in vars(cls).items():
                marked = getattr(member, "stripe_route", None)
                if marked is not None and name not in seen:
                    seen.add(name)
                    routes.append((marked, getattr(self, name)))
        return routes

    # -- lifecycle (ThreadedFake) ------------------------------------------------------------------

    name = "fake-stripe"

    def _server_make(self) -> _Server:
        return _Server(self)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- request pipeline ----------------------------------------------------------------------

    def _dispatch(
        self, method: str, path: str, query: str, body: str, headers: CaseInsensitiveDict[str]
    ) -> Reply | None:
        form = parse_form(body if method == "POST" else query)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, form, headers))
            latency = self.latency
        if latency:
            time.sleep(latency)

        failure = self._take_failure(path)
        if failure is not None and failure != DROP_AFTER_COMMIT:
            return None if failure == DROP else self._injected(failure)

        reply = self._handle(method, path, form, headers)
        return None if failure == DROP_AFTER_COMMIT else reply

    def _take_failure(self, path: str) -> int | None:
        with self._lock:
            if not self._route_matches(path):
                return None
            if self.outage:
                return self.outage_status
            if self.fail_next:
                return self.fail_next.pop(0)
        return None

    def _route_matches(self, path: str) -> bool:
        routes = self.fail_routes
        if routes is None:
            return True
        prefixes = [routes] if isinstance(routes, str) else list(routes)
        return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in prefixes)

    def _injected(self, status: int) -> Reply:
        headers: dict[str, str] = {}
        if self.should_retry_header is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry_header else "false"
        if status == 429:
            body = error_body(
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                "invalid_request_error",
                code="rate_limit",
            )
        elif status >= 500:
            body = error_body(
                "An unknown error occurred. Please retry the request; if the problem persists, "
                "contact support at https://support.stripe.com/.",
                "api_error",
            )
        else:
            body = error_body(f"Injected failure with status {status}.", "invalid_request_error")
        return Reply(status, body, headers)

    def _handle(self, method: str, path: str, form: Json, headers: CaseInsensitiveDict[str]) -> Reply:
        route = self._find_route(method, path)
        if route is None:
            return StripeError(
                404,
                f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
                "or we can help at https://support.stripe.com/.",
            ).reply()
        handler, match, needs_key = route
        api_key = ""
        if needs_key:
            auth_error = self._check_auth(headers)
            if auth_error is not None:
                return auth_error.reply()
            api_key = headers.get("Authorization", "")[len("Bearer ") :]

        idempotency_key = headers.get("Idempotency-Key") if method == "POST" else None
        store_key = (api_key, method, path, idempotency_key or "")
        fingerprint = json.dumps(form, sort_keys=True)
        # One lock around lookup, execution and storing, so concurrent requests with one key run once.
        with self._lock:
            stored = self._idempotent.get(store_key) if idempotency_key else None
            if stored is not None:
                stored_fingerprint, stored_reply = stored
                if stored_fingerprint != fingerprint:
                    return StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{idempotency_key}' if you meant to "
                        "execute a different request.",
                        type_="idempotency_error",
                    ).reply()
                replay_headers = {**(stored_reply.headers or {}), "Idempotent-Replayed": "true"}
                return Reply(
                    stored_reply.status, stored_reply.body, replay_headers, stored_reply.raw, stored_reply.content_type
                )
            try:
                reply = handler(form, path, match)
            except StripeError as exc:
                # Requests that fail validation are not saved, so a corrected retry may reuse the key.
                return exc.reply()
            if reply.body is not None:
                # Snapshot now: the stored response must not follow later changes to the object.
                reply.body = copy(reply.body)
            if idempotency_key:
                reply.headers = {**(reply.headers or {}), "Idempotency-Key": idempotency_key}
                self._idempotent[store_key] = (fingerprint, reply)
            return reply

    def _find_route(self, method: str, path: str) -> tuple[_Handler, re.Match[str], bool] | None:
        for route, handler in self._routes:
            if route.method != method:
                continue
            match = route.pattern.fullmatch(path)
            if match is not None:
                return handler, match, route.needs_key
        return None

    def _check_auth(self, headers: CaseInsensitiveDict[str]) -> StripeError | None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at "
                "https://support.stripe.com/.",
            )
        key = auth[len("Bearer ") :].strip()
        if not key.startswith("sk_test_") or (self.api_key is not None and key != self.api_key):
            masked = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:]
            return StripeError(401, f"Invalid API Key provided: {masked}", code="api_key_invalid")
        return None
