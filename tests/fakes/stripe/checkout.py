"""Checkout Sessions: POST /v1/checkout/sessions, GET one and its line items, expire one, the hosted payment
page (/c/pay/{id}) and `complete_checkout`, which pays one as the customer would."""

from __future__ import annotations

import html
import re
import time

from tests.fakes.stripe.customers import Customers
from tests.fakes.stripe.subscriptions import Subscriptions
from tests.fakes.stripe.webhooks import make_event
from tests.fakes.stripe.wire import WHOLE_NUMBER, Json, Reply, StripeError, copy, missing, new_id, no_such, route


class CheckoutSessions(Customers, Subscriptions):
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
            self.events.append(make_event("customer.subscription.created", copy(subscription), created=now))
            event = make_event("checkout.session.completed", copy(session), created=now)
            self.events.append(event)
            return copy(subscription), event

    # -- the API -------------------------------------------------------------------------------

    @route("POST", "/v1/checkout/sessions")
    def _create_checkout(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        mode = form.get("mode")
        if not mode:
            raise missing("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise StripeError(
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
            raise StripeError(400, "Invalid array", param="line_items")
        if mode in ("payment", "subscription") and not raw_items:
            raise StripeError(
                400,
                f"`line_items` is required in `{mode}` mode.",
                code="parameter_missing",
                param="line_items",
            )
        line_items: list[Json] = []
        for index, item in enumerate(raw_items):
            if not isinstance(item, dict) or not (item.get("price") or item.get("price_data")):
                raise missing(f"line_items[{index}][price]")
            quantity = item.get("quantity")
            if quantity is not None and not WHOLE_NUMBER.fullmatch(str(quantity)):
                raise StripeError(
                    400,
                    f"Invalid integer: {quantity}",
                    code="parameter_invalid_integer",
                    param=f"line_items[{index}][quantity]",
                )
            line_items.append(
                {
                    "id": new_id("li_"),
                    "object": "item",
                    "description": None,
                    "price": {"id": item.get("price"), "object": "price"} if item.get("price") else None,
                    "quantity": int(quantity) if quantity is not None else None,
                }
            )
        now = int(time.time())
        session_id = new_id("cs_test_", 58)
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
        return Reply(200, self._render_session(session, form))

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
            raise no_such("checkout.session", session_id)
        return session

    @route("GET", "/v1/checkout/sessions/{id}")
    def _get_checkout(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        return Reply(200, self._render_session(self._session(match["id"]), form))

    @route("GET", "/v1/checkout/sessions/{id}/line_items")
    def _get_items(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        self._session(match["id"])
        return Reply(200, self._line_item_list(match["id"]))

    @route("POST", "/v1/checkout/sessions/{id}/expire")
    def _expire_checkout(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        with self._lock:
            session = self._session(match["id"])
            if session["status"] != "open":
                raise StripeError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f'This Checkout Session has a status of "{session["status"]}".',
                )
            session.update(status="expired", url=None)
            self.events.append(make_event("checkout.session.expired", copy(session)))
            return Reply(200, self._render_session(session, form))

    # -- the hosted page (for browsers, so it takes no API key) --------------------------------

    @route("GET", "/c/pay/{id}", public=True)
    def _checkout_page(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        session = self._session(match["id"])
        page = (
            "<!doctype html><title>Fake Stripe Checkout</title>"
            f"<h1>Pay {html.escape(session['id'])}</h1>"
            "<form method='post'><button id='pay' type='submit'>Pay</button></form>"
            f"<a id='cancel' href='{html.escape(session.get('cancel_url') or '')}'>Cancel</a>"
        )
        return Reply(200, raw=page.encode("utf-8"), content_type="text/html; charset=utf-8")

    @route("POST", "/c/pay/{id}", public=True)
    def _checkout_pay(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        session = self._session(match["id"])
        if session["status"] == "open":
            _, event = self._complete(session["id"])
            self._deliver_in_background(event)
        target = (session.get("success_url") or "/").replace("{CHECKOUT_SESSION_ID}", session["id"])
        return Reply(303, raw=b"", headers={"Location": target}, content_type="text/plain")
