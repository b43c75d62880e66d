"""A wire-level fake of the Stripe v1 API endpoints Strata uses, plus webhook signing helpers."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, urlsplit

import requests
import stripe
from requests.structures import CaseInsensitiveDict

__all__ = [
    "API_VERSION",
    "DROP",
    "DROP_AFTER_COMMIT",
    "FakeStripe",
    "Json",
    "RecordedRequest",
    "make_event",
    "parse_form",
    "sign_webhook",
]

# Events carry the API version the installed SDK pins, as Stripe renders them for that account.
API_VERSION: str = stripe.api_version

# fail_next entries: 0 closes the socket before the request is handled (nothing happened);
# -1 handles it fully (state changes, idempotent result stored) and then closes the socket,
# which is the "response lost on the way back" case that idempotency keys exist for.
DROP = 0
DROP_AFTER_COMMIT = -1

# Stripe's documented limits for POST /v1/billing/meter_events.
METER_EVENT_MAX_AGE_SECONDS = 35 * 24 * 3600
METER_EVENT_MAX_FUTURE_SECONDS = 5 * 60
METER_EVENT_MAX_STRING = 100

Json = dict[str, Any]

_ALNUM = string.ascii_letters + string.digits
_WHOLE_NUMBER = re.compile(r"-?\d+")
_KEY_PATH = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


class RecordedRequest(NamedTuple):
    """One request as the fake received it (headers are case-insensitive)."""

    method: str
    path: str
    form: Json
    headers: CaseInsensitiveDict[str]


@dataclass
class _Reply:
    status: int
    body: Json | None = None
    headers: dict[str, str] | None = None
    raw: bytes | None = None
    content_type: str = "application/json"


class _StripeError(Exception):
    """Raised inside handlers; rendered as Stripe's `{"error": {...}}` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def reply(self) -> _Reply:
        return _Reply(self.status, _error_body(self.message, self.type, self.code, self.param), self.headers)


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> Json:
    error: Json = {"message": message, "type": type_}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param:
        error["param"] = param
    return {"error": error}


def _copy(obj: Json) -> Json:
    # Callers get snapshots, so later changes to the fake's state do not rewrite old events.
    copied: Json = json.loads(json.dumps(obj))
    return copied


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _missing(param: str) -> _StripeError:
    return _StripeError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _no_such(kind: str, object_id: str, param: str = "id") -> _StripeError:
    # Only the object named by the URL is a 404; a bad id in a body parameter is a 400 at Stripe.
    status = 404 if param == "id" else 400
    return _StripeError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


def parse_form(body: str) -> Json:
    """Decode Stripe-style form encoding (`a[b][0][c]=v`) into nested dicts and lists."""
    root: Json = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        match = _KEY_PATH.match(key)
        if match is None:
            # Not bracket-shaped (e.g. a stray "]"): keep it verbatim rather than guess.
            root[key] = value
            continue
        parts = [match.group(1), *_BRACKETS.findall(match.group(2))]
        node = root
        for index, part in enumerate(parts):
            # `key[]=v` appends; numbering it lets the list conversion below handle it.
            name = part or str(len(node))
            if index == len(parts) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    # The top level is always a hash, even if every key happens to be a digit.
    return {key: _listify(value) for key, value in root.items()}


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    # Only a dense 0..n-1 run is an array; metadata keys that happen to be digits stay a hash.
    if converted and set(converted) == {str(i) for i in range(len(converted))}:
        return [converted[str(i)] for i in range(len(converted))]
    return converted


def sign_webhook(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """Build the `Stripe-Signature` header Stripe sends: `t=<ts>,v1=<HMAC-SHA256 of "{t}.{payload}">`."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    digest = hmac.new(secret.encode("utf-8"), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def make_event(
    event_type: str,
    obj: Json,
    *,
    event_id: str | None = None,
    created: int | None = None,
    previous_attributes: Json | None = None,
) -> Json:
    """A Stripe Event (snapshot payload) as delivered to a webhook endpoint."""
    data: Json = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or _new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


class _Handler(BaseHTTPRequestHandler):
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
        self.send_header("Request-Id", _new_id("req_", 14))
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeStripe) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


_Route = Callable[[Json, str, "re.Match[str]"], _Reply]


class FakeStripe:
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
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        id_ = r"(?P<id>[^/]+)"
        self._routes: list[tuple[str, re.Pattern[str], _Route, bool]] = []
        self._route("POST", "/v1/customers", self._create_customer)
        self._route("GET", f"/v1/customers/{id_}", self._get_customer)
        self._route("POST", f"/v1/customers/{id_}", self._update_customer)
        self._route("POST", "/v1/checkout/sessions", self._create_checkout)
        self._route("GET", f"/v1/checkout/sessions/{id_}", self._get_checkout)
        self._route("GET", f"/v1/checkout/sessions/{id_}/line_items", self._get_items)
        self._route("POST", "/v1/billing_portal/sessions", self._create_portal)
        self._route("GET", f"/v1/subscriptions/{id_}", self._get_subscription)
        self._route("DELETE", f"/v1/subscriptions/{id_}", self._cancel_subscription)
        self._route("GET", f"/v1/events/{id_}", self._get_event)
        self._route("POST", "/v1/billing/meter_events", self._create_meter_event)
        self._route("POST", "/v1/billing/meter_event_adjustments", self._adjust)
        # The hosted checkout page is for browsers, so it takes no API key.
        self._route("GET", f"/c/pay/{id_}", self._checkout_page, public=True)
        self._route("POST", f"/c/pay/{id_}", self._checkout_pay, public=True)
        # The hosted customer portal, likewise: change the plan, cancel, or just go back.
        self._route("GET", f"/p/session/{id_}", self._portal_page, public=True)
        self._route("POST", f"/p/session/{id_}", self._portal_act, public=True)
        self.reset()

    def _route(self, method: str, pattern: str, handler: _Route, *, public: bool = False) -> None:
        self._routes.append((method, re.compile(pattern), handler, not public))

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-stripe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeStripe is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget all objects, recorded requests and failure switches."""
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self.customers: dict[str, Json] = {}
            self.checkout_sessions: dict[str, Json] = {}
            self.portal_sessions: dict[str, Json] = {}
            self.subscriptions: dict[str, Json] = {}
            self.events: list[Json] = []
            self.meter_events: list[Json] = []
            self.meter_event_adjustments: list[Json] = []
            self.webhook_deliveries: list[tuple[str, int]] = []
            self.fail_next: list[int] = []
            self.fail_routes: str | Sequence[str] | None = None
            self.outage: bool = False
            self.outage_status: int = 503
            self.should_retry_header: bool | None = None
            self.latency: float = 0.0
            # Prices the portal offers when the customer changes plan: [{"price": id, "name": label}].
            self.portal_prices: list[Json] = []
            self._portal_tokens: dict[str, str] = {}
            self._line_items: dict[str, list[Json]] = {}
            self._subscription_metadata: dict[str, Json] = {}
            self._identifiers: set[str] = set()
            self._idempotent: dict[tuple[str, str, str, str], tuple[str, _Reply]] = {}

    # -- inspection helpers --------------------------------------------------------------------

    def meter_totals(self, event_name: str | None = None) -> dict[str, int]:
        """Sum of accepted, uncancelled meter event values per `stripe_customer_id`."""
        totals: dict[str, int] = {}
        with self._lock:
            for event in self.meter_events:
                if event_name is not None and event["event_name"] != event_name:
                    continue
                customer = event["payload"]["stripe_customer_id"]
                totals[customer] = totals.get(customer, 0) + int(event["payload"]["value"])
        return totals

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    # -- Stripe-side actions tests drive -------------------------------------------------------

    def complete_checkout(self, session_id: str) -> tuple[Json, Json]:
        """Pay a subscription-mode Checkout Session: returns (subscription, checkout.session.completed event).

        When `webhook_url` and `webhook_secret` are set, the event is also POSTed there, signed.
        """
        subscription, event = self._complete(session_id)
        if self.webhook_url:
            self.deliver(event)
        return subscription, event

    def _complete(self, session_id: str) -> tuple[Json, Json]:
        with self._lock:
            session = self.checkout_sessions.get(session_id)
            if session is None:
                raise KeyError(f"No such checkout.session: {session_id!r}")
            if session["mode"] != "subscription":
                raise ValueError(f"complete_checkout only supports subscription mode, got {session['mode']!r}")
            if session["status"] != "open":
                raise ValueError(f"Checkout Session {session_id} is {session['status']}, not open")
            now = int(time.time())
            customer_id = session["customer"]
            if customer_id is None:
                # Stripe creates a customer when the session was opened without one.
                customer_id = self._insert_customer({"email": session.get("customer_email")}, now)["id"]
            subscription = self._insert_subscription(session, customer_id, now)
            session.update(
                customer=customer_id,
                subscription=subscription["id"],
                status="complete",
                payment_status="paid",
                url=None,
            )
            self.events.append(make_event("customer.subscription.created", _copy(subscription), created=now))
            event = make_event("checkout.session.completed", _copy(session), created=now)
            self.events.append(event)
            return _copy(subscription), event

    def deliver(self, event: Json, url: str | None = None, secret: str | None = None) -> int:
        """POST a signed event to a webhook endpoint the way Stripe does; returns the HTTP status."""
        target = url or self.webhook_url
        key = secret or self.webhook_secret
        if not target or not key:
            raise ValueError("deliver() needs a webhook url and secret")
        body = json.dumps(event, indent=2).encode("utf-8")
        response = requests.post(
            target,
            data=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign_webhook(body, key),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
            timeout=30,
        )
        status = response.status_code
        with self._lock:
            self.webhook_deliveries.append((event["id"], status))
        return status

    # -- request pipeline ----------------------------------------------------------------------

    def _dispatch(
        self, method: str, path: str, query: str, body: str, headers: CaseInsensitiveDict[str]
    ) -> _Reply | None:
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

    def _injected(self, status: int) -> _Reply:
        headers: dict[str, str] = {}
        if self.should_retry_header is not None:
            headers["Stripe-Should-Retry"] = "true" if self.should_retry_header else "false"
        if status == 429:
            body = _error_body(
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                "invalid_request_error",
                code="rate_limit",
            )
        elif status >= 500:
            body = _error_body(
                "An unknown error occurred. Please retry the request; if the problem persists, "
                "contact support at https://support.stripe.com/.",
                "api_error",
            )
        else:
            body = _error_body(f"Injected failure with status {status}.", "invalid_request_error")
        return _Reply(status, body, headers)

    def _handle(self, method: str, path: str, form: Json, headers: CaseInsensitiveDict[str]) -> _Reply:
        route = self._find_route(method, path)
        if route is None:
            return _StripeError(
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
                    return _StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        f"first used with. Try using a key other than '{idempotency_key}' if you meant to "
                        "execute a different request.",
                        type_="idempotency_error",
                    ).reply()
                replay_headers = {**(stored_reply.headers or {}), "Idempotent-Replayed": "true"}
                return _Reply(
                    stored_reply.status, stored_reply.body, replay_headers, stored_reply.raw, stored_reply.content_type
                )
            try:
                reply = handler(form, path, match)
            except _StripeError as exc:
                # Requests that fail validation are not saved, so a corrected retry may reuse the key.
                return exc.reply()
            if reply.body is not None:
                # Snapshot now: the stored response must not follow later changes to the object.
                reply.body = _copy(reply.body)
            if idempotency_key:
                reply.headers = {**(reply.headers or {}), "Idempotency-Key": idempotency_key}
                self._idempotent[store_key] = (fingerprint, reply)
            return reply

    def _find_route(self, method: str, path: str) -> tuple[_Route, re.Match[str], bool] | None:
        for route_method, pattern, handler, needs_key in self._routes:
            if route_method != method:
                continue
            match = pattern.fullmatch(path)
            if match is not None:
                return handler, match, needs_key
        return None

    def _check_auth(self, headers: CaseInsensitiveDict[str]) -> _StripeError | None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer ") :].strip():
            return _StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization "
                "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                "https://stripe.com/docs/api#authentication for details, or we can help at "
                "https://support.stripe.com/.",
            )
        key = auth[len("Bearer ") :].strip()
        if not key.startswith("sk_test_") or (self.api_key is not None and key != self.api_key):
            masked = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:]
            return _StripeError(401, f"Invalid API Key provided: {masked}", code="api_key_invalid")
        return None

    # -- customers -----------------------------------------------------------------------------

    def _insert_customer(self, form: Json, now: int) -> Json:
        customer: Json = {
            "id": _new_id("cus_", 14),
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": now,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": form.get("description"),
            "email": form.get("email"),
            "invoice_prefix": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(form.get("metadata") or {}),
            "name": form.get("name"),
            "phone": form.get("phone"),
            "preferred_locales": list(form.get("preferred_locales") or []),
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self.customers[customer["id"]] = customer
        return customer

    def _customer(self, customer_id: str, param: str = "id") -> Json:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise _no_such("customer", customer_id, param)
        return customer

    def _create_customer(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        return _Reply(200, self._insert_customer(form, int(time.time())))

    def _get_customer(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        return _Reply(200, self._customer(match["id"]))

    def _update_customer(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        customer = self._customer(match["id"])
        for field in ("email", "name", "description", "phone"):
            if field in form:
                customer[field] = form[field] or None
        for key, value in (form.get("metadata") or {}).items():
            # Stripe unsets a metadata key when it is sent empty.
            if value == "":
                customer["metadata"].pop(key, None)
            else:
                customer["metadata"][key] = value
        return _Reply(200, customer)

    # -- checkout ------------------------------------------------------------------------------

    def _create_checkout(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        mode = form.get("mode")
        if not mode:
            raise _missing("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise _StripeError(
                400,
                "Invalid mode: must be one of payment, setup, or subscription",
                code="parameter_invalid_string",
                param="mode",
            )
        customer_id = form.get("customer")
        if customer_id:
            self._customer(customer_id, param="customer")
        raw_items = form.get("line_items") or []
        if not isinstance(raw_items, list):
            raise _StripeError(400, "Invalid array", param="line_items")
        if mode in ("payment", "subscription") and not raw_items:
            raise _StripeError(
                400,
                f"`line_items` is required in `{mode}` mode.",
                code="parameter_missing",
                param="line_items",
            )
        line_items: list[Json] = []
        for index, item in enumerate(raw_items):
            if not isinstance(item, dict) or not (item.get("price") or item.get("price_data")):
                raise _missing(f"line_items[{index}][price]")
            quantity = item.get("quantity")
            if quantity is not None and not _WHOLE_NUMBER.fullmatch(str(quantity)):
                raise _StripeError(
                    400,
                    f"Invalid integer: {quantity}",
                    code="parameter_invalid_integer",
                    param=f"line_items[{index}][quantity]",
                )
            line_items.append(
                {
                    "id": _new_id("li_"),
                    "object": "item",
                    "description": None,
                    "price": {"id": item.get("price"), "object": "price"} if item.get("price") else None,
                    "quantity": int(quantity) if quantity is not None else None,
                }
            )
        now = int(time.time())
        session_id = _new_id("cs_test_", 58)
        subscription_data = form.get("subscription_data") or {}
        session: Json = {
            "id": session_id,
            "object": "checkout.session",
            "cancel_url": form.get("cancel_url"),
            "client_reference_id": form.get("client_reference_id"),
            "created": now,
            "currency": None,
            "customer": customer_id or None,
            "customer_email": form.get("customer_email"),
            "expires_at": now + 24 * 3600,
            "livemode": False,
            "metadata": dict(form.get("metadata") or {}),
            "mode": mode,
            "payment_status": "no_payment_required" if mode == "setup" else "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": form.get("success_url"),
            "ui_mode": form.get("ui_mode") or "hosted",
            "url": f"{self.base_url}/c/pay/{session_id}",
        }
        self.checkout_sessions[session_id] = session
        self._line_items[session_id] = line_items
        # Stripe does not echo subscription_data on the session; keep it so the subscription gets it.
        self._subscription_metadata[session_id] = dict(subscription_data.get("metadata") or {})
        return _Reply(200, self._render_session(session, form))

    def _render_session(self, session: Json, form: Json) -> Json:
        rendered = dict(session)
        expand = form.get("expand") or []
        if "line_items" in expand:
            rendered["line_items"] = self._line_item_list(session["id"])
        return rendered

    def _line_item_list(self, session_id: str) -> Json:
        return {
            "object": "list",
            "data": [dict(item) for item in self._line_items.get(session_id, [])],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session_id}/line_items",
        }

    def _session(self, session_id: str) -> Json:
        session = self.checkout_sessions.get(session_id)
        if session is None:
            raise _no_such("checkout.session", session_id)
        return session

    def _get_checkout(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        return _Reply(200, self._render_session(self._session(match["id"]), form))

    def _get_items(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        self._session(match["id"])
        return _Reply(200, self._line_item_list(match["id"]))

    def _checkout_page(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        session = self._session(match["id"])
        page = (
            "<!doctype html><title>Fake Stripe Checkout</title>"
            f"<h1>Pay {html.escape(session['id'])}</h1>"
            "<form method='post'><button id='pay' type='submit'>Pay</button></form>"
            f"<a id='cancel' href='{html.escape(session.get('cancel_url') or '')}'>Cancel</a>"
        )
        return _Reply(200, raw=page.encode("utf-8"), content_type="text/html; charset=utf-8")

    def _checkout_pay(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        session = self._session(match["id"])
        if session["status"] == "open":
            _, event = self._complete(session["id"])
            if self.webhook_url:
                # Stripe delivers webhooks independently of the redirect, and the receiver may call
                # back into this fake, so deliver from another thread once this request is answered.
                threading.Thread(target=self.deliver, args=(event,), daemon=True).start()
        target = (session.get("success_url") or "/").replace("{CHECKOUT_SESSION_ID}", session["id"])
        return _Reply(303, raw=b"", headers={"Location": target}, content_type="text/plain")

    # -- billing portal ------------------------------------------------------------------------

    def _create_portal(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        customer_id = form.get("customer")
        if not customer_id:
            raise _missing("customer")
        self._customer(customer_id, param="customer")
        token = _new_id("test_", 40)
        portal: Json = {
            "id": _new_id("bps_"),
            "object": "billing_portal.session",
            "configuration": "bpc_" + "fake" + _new_id("", 20),
            "created": int(time.time()),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": form.get("locale"),
            "on_behalf_of": None,
            "return_url": form.get("return_url"),
            "url": f"{self.base_url}/p/session/{token}",
        }
        flow = form.get("flow_data")
        if flow:
            kind = flow.get("type")
            if kind not in ("subscription_update", "subscription_cancel", "payment_method_update"):
                raise _StripeError(400, f"Invalid flow_data[type]: {kind}", param="flow_data[type]")
            subscription_id = (flow.get(kind) or {}).get("subscription")
            if kind != "payment_method_update":
                if not subscription_id:
                    raise _missing(f"flow_data[{kind}][subscription]")
                if subscription_id not in self.subscriptions:
                    raise _no_such("subscription", subscription_id, param=f"flow_data[{kind}][subscription]")
            portal["flow"] = {
                "type": kind,
                kind: {"subscription": subscription_id},
                "after_completion": flow.get("after_completion") or {"type": "portal_homepage"},
            }
        self.portal_sessions[portal["id"]] = portal
        self._portal_tokens[token] = portal["id"]
        return _Reply(200, portal)

    def _portal(self, token: str) -> Json:
        portal_id = self._portal_tokens.get(token)
        if portal_id is None:
            raise _no_such("billing_portal.session", token)
        return self.portal_sessions[portal_id]

    def _portal_page(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        portal = self._portal(match["id"])
        flow = portal.get("flow") or {}
        parts = ["<!doctype html><title>Fake Stripe customer portal</title><h1>Billing portal</h1>"]
        if flow.get("type") == "subscription_update":
            parts.append("<h2>Change plan</h2>")
            for price in self.portal_prices:
                parts.append(
                    "<form method='post'><input type='hidden' name='action' value='update'>"
                    f"<input type='hidden' name='price' value='{html.escape(price['price'])}'>"
                    f"<button type='submit' id='choose-{html.escape(price['price'])}'>{html.escape(price['name'])}"
                    "</button></form>"
                )
        elif flow.get("type") == "subscription_cancel":
            parts.append(
                "<h2>Cancel your subscription</h2><form method='post'><input type='hidden' name='action' "
                "value='cancel'><button type='submit' id='confirm-cancel'>Cancel subscription</button></form>"
            )
        parts.append(f"<a id='return' href='{html.escape(portal.get('return_url') or '')}'>Return</a>")
        return _Reply(200, raw="".join(parts).encode("utf-8"), content_type="text/html; charset=utf-8")

    def _portal_act(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        portal = self._portal(match["id"])
        flow = portal.get("flow") or {}
        kind = flow.get("type")
        subscription = self.subscriptions.get((flow.get(kind) or {}).get("subscription") or "")
        if subscription is None:
            raise _StripeError(400, "This portal session has no subscription to change.")
        now = int(time.time())
        if form.get("action") == "update" and kind == "subscription_update":
            item = subscription["items"]["data"][0]
            item["price"] = {"id": form.get("price"), "object": "price"}
            subscription["items"]["data"] = [item]
            subscription["items"]["total_count"] = 1
            event = make_event("customer.subscription.updated", _copy(subscription), created=now)
        elif form.get("action") == "cancel" and kind == "subscription_cancel":
            subscription.update(status="canceled", canceled_at=now, ended_at=now)
            event = make_event("customer.subscription.deleted", _copy(subscription), created=now)
        else:
            raise _StripeError(400, "Unknown portal action.")
        self.events.append(event)
        if self.webhook_url:
            threading.Thread(target=self.deliver, args=(event,), daemon=True).start()
        after = flow.get("after_completion") or {}
        target = ((after.get("redirect") or {}).get("return_url")) or portal.get("return_url") or "/"
        return _Reply(303, raw=b"", headers={"Location": target}, content_type="text/plain")

    # -- subscriptions and events --------------------------------------------------------------

    def _insert_subscription(self, session: Json, customer_id: str, now: int) -> Json:
        subscription_id = _new_id("sub_")
        period_end = now + 30 * 24 * 3600
        items = [
            {
                "id": _new_id("si_", 14),
                "object": "subscription_item",
                "created": now,
                # Since API 2025-03-31 the billing period lives on the item, not the subscription.
                "current_period_end": period_end,
                "current_period_start": now,
                "metadata": {},
                "price": item["price"],
                "quantity": item["quantity"],
                "subscription": subscription_id,
            }
            for item in self._line_items.get(session["id"], [])
        ]
        metadata = self._subscription_metadata.get(session["id"], {})
        subscription: Json = {
            "id": subscription_id,
            "object": "subscription",
            "billing_cycle_anchor": now,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "collection_method": "charge_automatically",
            "created": now,
            "currency": "usd",
            "customer": customer_id,
            "ended_at": None,
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={subscription_id}",
            },
            "latest_invoice": _new_id("in_"),
            "livemode": False,
            "metadata": dict(metadata),
            "start_date": now,
            "status": "active",
            "trial_end": None,
            "trial_start": None,
        }
        self.subscriptions[subscription_id] = subscription
        return subscription

    def _get_subscription(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        subscription = self.subscriptions.get(match["id"])
        if subscription is None:
            raise _no_such("subscription", match["id"])
        return _Reply(200, subscription)

    def _cancel_subscription(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        subscription = self.subscriptions.get(match["id"])
        if subscription is None:
            raise _no_such("subscription", match["id"])
        now = int(time.time())
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.events.append(make_event("customer.subscription.deleted", _copy(subscription)))
        return _Reply(200, subscription)

    def _get_event(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        for event in self.events:
            if event["id"] == match["id"]:
                return _Reply(200, event)
        raise _no_such("event", match["id"])

    # -- billing meters ------------------------------------------------------------------------

    def _create_meter_event(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        event_name = form.get("event_name")
        if not event_name:
            raise _missing("event_name")
        if len(event_name) > METER_EVENT_MAX_STRING:
            raise _StripeError(
                400,
                f"Invalid event_name: must be at most {METER_EVENT_MAX_STRING} characters",
                code="parameter_invalid_string",
                param="event_name",
            )
        payload = form.get("payload")
        if not isinstance(payload, dict) or not payload:
            raise _missing("payload")
        if not payload.get("stripe_customer_id"):
            raise _missing("payload[stripe_customer_id]")
        value = payload.get("value")
        if value is None or value == "":
            raise _missing("payload[value]")
        if not _WHOLE_NUMBER.fullmatch(str(value)):
            raise _StripeError(
                400,
                f"Invalid value for payload[value]: '{value}'. The value must be a whole number.",
                code="parameter_invalid_integer",
                param="payload[value]",
            )
        now = int(time.time())
        raw_timestamp = form.get("timestamp")
        if raw_timestamp is None or raw_timestamp == "":
            timestamp = now
        elif not _WHOLE_NUMBER.fullmatch(str(raw_timestamp)):
            raise _StripeError(
                400, f"Invalid integer: {raw_timestamp}", code="parameter_invalid_integer", param="timestamp"
            )
        else:
            timestamp = int(raw_timestamp)
        if timestamp < now - METER_EVENT_MAX_AGE_SECONDS:
            raise _StripeError(
                400,
                "Timestamp must be within the past 35 calendar days.",
                code="parameter_invalid_integer",
                param="timestamp",
            )
        if timestamp > now + METER_EVENT_MAX_FUTURE_SECONDS:
            raise _StripeError(
                400,
                "Timestamp must be no more than 5 minutes in the future.",
                code="parameter_invalid_integer",
                param="timestamp",
            )
        identifier = form.get("identifier") or _new_id("", 32)
        if len(identifier) > METER_EVENT_MAX_STRING:
            raise _StripeError(
                400,
                f"Invalid identifier: must be at most {METER_EVENT_MAX_STRING} characters",
                code="parameter_invalid_string",
                param="identifier",
            )
        if identifier in self._identifiers:
            # Stripe marks this as not worth retrying; a client should treat it as already delivered.
            raise _StripeError(
                400, f"An event already exists with identifier {identifier}.", headers={"Stripe-Should-Retry": "false"}
            )
        self._identifiers.add(identifier)
        event: Json = {
            "object": "billing.meter_event",
            "created": now,
            "event_name": event_name,
            "identifier": identifier,
            "livemode": False,
            "payload": {key: str(val) for key, val in payload.items()},
            "timestamp": timestamp,
        }
        self.meter_events.append(event)
        return _Reply(200, dict(event))

    def _adjust(self, form: Json, path: str, match: re.Match[str]) -> _Reply:
        event_name = form.get("event_name")
        if not event_name:
            raise _missing("event_name")
        adjustment_type = form.get("type") or "cancel"
        if adjustment_type != "cancel":
            raise _StripeError(
                400, "Invalid type: must be one of cancel", code="parameter_invalid_string", param="type"
            )
        cancel = form.get("cancel")
        identifier = cancel.get("identifier") if isinstance(cancel, dict) else None
        if not identifier:
            raise _missing("cancel[identifier]")
        # Stripe accepts the adjustment and applies it asynchronously; the fake applies it at once.
        # The identifier stays taken, so re-sending the cancelled event is still a duplicate.
        self.meter_events[:] = [
            e for e in self.meter_events if not (e["identifier"] == identifier and e["event_name"] == event_name)
        ]
        adjustment: Json = {
            "object": "billing.meter_event_adjustment",
            "cancel": {"identifier": identifier},
            "event_name": event_name,
            "livemode": False,
            "status": "pending",
            "type": "cancel",
        }
        self.meter_event_adjustments.append(adjustment)
        return _Reply(200, dict(adjustment))
