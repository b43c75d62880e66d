"""Stripe webhooks: verify the signature, store the event by id, then act on it, in one transaction."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.db import transaction

from billing.models import WebhookEvent
from billing.serializers import StripeEventSerializer
from billing.services import subscriptions
from core.platform.exceptions import ApplicationError
from core.platform.json import json_loads
from core.platform.validators import json_unstorable_reason

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


def _verified_event(payload: bytes, signature: str | None) -> Any:
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        # 503, not 400: Stripe keeps retrying, and the events arrive once the secret is configured.
        raise ApplicationError(
            "Stripe webhooks are not configured on this server.", code="billing_unavailable", status=503
        )
    if not signature:
        raise _invalid("The Stripe-Signature header is missing.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed("The webhook body is not UTF-8 JSON.") from exc
    try:
        # The signature alone: stripe.Webhook.construct_event would also build an Event object,
        # which fails with a 500-worthy AttributeError on a signed body that is a JSON array.
        stripe.WebhookSignature.verify_header(text, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        raise _invalid("The Stripe-Signature header does not match this payload.") from exc
    try:
        return json_loads(text)
    except ValueError as exc:
        raise _malformed("The webhook body is not JSON.") from exc


def _malformed(message: str, fields: Any = None) -> ApplicationError:
    extra = {"fields": fields} if fields else None
    return ApplicationError(message, code="invalid_payload", status=400, extra=extra)


def _checked_event(event: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The event as stored (raw) and the fields the handlers read (validated), or a 400."""
    if not isinstance(event, dict):
        raise _malformed("The webhook body is not a Stripe event (a JSON object).")
    unstorable = json_unstorable_reason(event)
    if unstorable:
        raise _malformed(f"The webhook body cannot be stored: {unstorable}")
    shape = StripeEventSerializer(data=event)
    if not shape.is_valid():
        field, errors = next(iter(shape.errors.items()))
        raise _malformed(f"The webhook body is not a Stripe event: {field}: {_first(errors)}", shape.errors)
    return event, shape.validated_data


def _first(errors: Any) -> str:
    while isinstance(errors, dict | list) and errors:
        errors = next(iter(errors.values())) if isinstance(errors, dict) else errors[0]
    return str(errors)


def webhook_event_receive(*, payload: bytes, signature: str | None) -> WebhookOutcome:
    """Verify, record and apply one Stripe event; a replay of a stored event does nothing.

    The event row and the changes it causes commit together: if applying fails, neither is
    kept and Stripe's retry gets a second chance. Concurrent deliveries of one event meet at
    the unique ``event_id`` and only the first acts.
    """
    event, checked = _checked_event(_verified_event(payload, signature))
    event_id, event_type = checked["id"], checked["type"]
    event_at = dt.datetime.fromtimestamp(checked["created"], tz=dt.UTC)
    obj = _plain(checked["data"]["object"])
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


def _plain(value: Any) -> Any:
    """Validated data as plain dicts and lists, without the keys the event did not have."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
