"""Events and their delivery: GET /v1/events/{id}, `make_event`, and webhooks POSTed signed the way
Stripe signs them (`sign_webhook`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time

import requests
import stripe

from tests.fakes.stripe.state import StripeState
from tests.fakes.stripe.wire import Json, Reply, new_id, no_such, route

# Events carry the API version the installed SDK pins, as Stripe renders them for that account.
API_VERSION: str = stripe.api_version


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
        "id": event_id or new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


class Webhooks(StripeState):
    webhook_url: str | None
    webhook_secret: str | None

    @route("GET", "/v1/events/{id}")
    def _get_event(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        for event in self.events:
            if event["id"] == match["id"]:
                return Reply(200, event)
        raise no_such("event", match["id"])

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

    def _deliver_in_background(self, event: Json) -> None:
        # Stripe delivers webhooks independently of the page's redirect, and the receiver may call
        # back into this fake, so deliver from another thread once the current request is answered.
        if self.webhook_url:
            threading.Thread(target=self.deliver, args=(event,), daemon=True).start()
