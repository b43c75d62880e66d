"""Stripe webhooks: verify the signature, store the event by id, then act on it, in one transaction."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction

from billing.models import WebhookEvent
from billing.services import subscriptions
from core.platform.exceptions import ApplicationError

logger = logging.getLogger(__name__)

_Handler = Callable[[dict[str, Any], dt.datetime], str]

_HANDLERS: dict[str, _Handler] = {
    "checkout.session.completed": lambda obj, at: subscriptions.checkout_completed(session=obj, event_at=at),
    "customer.subscription.created": lambda obj, at: subscriptions.subscription_changed(obj=obj, event_at=at),
    "customer.subscription.updated": lambda obj, at: subscriptions.subscription_changed(obj=obj, event_at=at),
    "customer.subscription.deleted": lambda obj, at: subscriptions.subscription_changed(
        obj=obj, event_at=at, deleted=True
    ),
    "invoice.paid": lambda obj, at: subscriptions.invoice_paid(invoice=obj, event_at=at),
    "invoice.payment_failed": lambda obj, at: subscriptions.invoice_payment_failed(invoice=obj, event_at=at),
}


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    type: str
    duplicate: bool
    outcome: str


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, code="invalid_signature", status=400)


def _verified_event(payload: bytes, signature: str | None) -> dict[str, Any]:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # 503, not 400: Stripe keeps retrying, and the events arrive once the secret is configured.
        raise ApplicationError(
            "Stripe webhooks are not configured on this server.", code="billing_unavailable", status=503
        )
    if not signature:
        raise _invalid("The Stripe-Signature header is missing.")
    try:
        stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise _invalid("The Stripe-Signature header does not match this payload.") from exc
    except ValueError as exc:
        raise ApplicationError("The webhook body is not JSON.", code="invalid_payload", status=400) from exc
    event = json.loads(payload)
    if not (
        isinstance(event, dict) and event.get("id") and event.get("type") and isinstance(event.get("created"), int)
    ):
        raise ApplicationError("The webhook body is not a Stripe event.", code="invalid_payload", status=400)
    return event


def webhook_event_receive(*, payload: bytes, signature: str | None) -> WebhookOutcome:
    """Verify, record and apply one Stripe event; a replay of a stored event does nothing.

    The event row and the changes it causes commit together: if applying fails, neither is
    kept and Stripe's retry gets a second chance. Concurrent deliveries of one event meet at
    the unique ``event_id`` and only the first acts.
    """
    event = _verified_event(payload, signature)
    event_id, event_type = event["id"], event["type"]
    event_at = dt.datetime.fromtimestamp(event["created"], tz=dt.UTC)
    obj = ((event.get("data") or {}).get("object")) or {}
    with transaction.atomic():
        stored, created = WebhookEvent.objects.get_or_create(
            event_id=event_id, defaults={"type": event_type, "created": event_at, "payload": event}
        )
        if not created:
            return WebhookOutcome(event_id, event_type, duplicate=True, outcome=stored.outcome)
        handler = _HANDLERS.get(event_type)
        outcome = handler(obj, event_at) if handler else "stored: not an event Strata acts on"
        stored.outcome = outcome[:200]
        stored.save(update_fields=["outcome"])
    logger.info("stripe event %s %s: %s", event_type, event_id, outcome)
    return WebhookOutcome(event_id, event_type, duplicate=False, outcome=outcome)
