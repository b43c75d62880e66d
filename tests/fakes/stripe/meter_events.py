"""Billing meters: POST /v1/billing/meter_events (with Stripe's documented limits) and
/v1/billing/meter_event_adjustments, and `meter_totals` for tests to read."""

from __future__ import annotations

import re
import time

from tests.fakes.stripe.state import StripeState
from tests.fakes.stripe.wire import WHOLE_NUMBER, Json, Reply, StripeError, missing, new_id, route

# Stripe's documented limits for POST /v1/billing/meter_events.
METER_EVENT_MAX_AGE_SECONDS = 35 * 24 * 3600
METER_EVENT_MAX_FUTURE_SECONDS = 5 * 60
METER_EVENT_MAX_STRING = 100


class MeterEvents(StripeState):
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

    @route("POST", "/v1/billing/meter_events")
    def _create_meter_event(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        event_name = form.get("event_name")
        if not event_name:
            raise missing("event_name")
        if len(event_name) > METER_EVENT_MAX_STRING:
            raise StripeError(
                400,
                f"Invalid event_name: must be at most {METER_EVENT_MAX_STRING} characters",
                code="parameter_invalid_string",
                param="event_name",
            )
        payload = form.get("payload")
        if not isinstance(payload, dict) or not payload:
            raise missing("payload")
        if not payload.get("stripe_customer_id"):
            raise missing("payload[stripe_customer_id]")
        value = payload.get("value")
        if value is None or value == "":
            raise missing("payload[value]")
        if not WHOLE_NUMBER.fullmatch(str(value)):
            raise StripeError(
                400,
                f"Invalid value for payload[value]: '{value}'. The value must be a whole number.",
                code="parameter_invalid_integer",
                param="payload[value]",
            )
        now = int(time.time())
        raw_timestamp = form.get("timestamp")
        if raw_timestamp is None or raw_timestamp == "":
            timestamp = now
        elif not WHOLE_NUMBER.fullmatch(str(raw_timestamp)):
            raise StripeError(
                400, f"Invalid integer: {raw_timestamp}", code="parameter_invalid_integer", param="timestamp"
            )
        else:
            timestamp = int(raw_timestamp)
        if timestamp < now - METER_EVENT_MAX_AGE_SECONDS:
            raise StripeError(
                400,
                "Timestamp must be within the past 35 calendar days.",
                code="parameter_invalid_integer",
                param="timestamp",
            )
        if timestamp > now + METER_EVENT_MAX_FUTURE_SECONDS:
            raise StripeError(
                400,
                "Timestamp must be no more than 5 minutes in the future.",
                code="parameter_invalid_integer",
                param="timestamp",
            )
        identifier = form.get("identifier") or new_id("", 32)
        if len(identifier) > METER_EVENT_MAX_STRING:
            raise StripeError(
                400,
                f"Invalid identifier: must be at most {METER_EVENT_MAX_STRING} characters",
                code="parameter_invalid_string",
                param="identifier",
            )
        if identifier in self._identifiers:
            # Stripe marks this as not worth retrying; a client should treat it as already delivered.
            raise StripeError(
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
        return Reply(200, dict(event))

    @route("POST", "/v1/billing/meter_event_adjustments")
    def _adjust(self, form: Json, path: str, match: re.Match[str]) -> Reply:
        event_name = form.get("event_name")
        if not event_name:
            raise missing("event_name")
        adjustment_type = form.get("type") or "cancel"
        if adjustment_type != "cancel":
            raise StripeError(400, "Invalid type: must be one of cancel", code="parameter_invalid_string", param="type")
        cancel = form.get("cancel")
        identifier = cancel.get("identifier") if isinstance(cancel, dict) else None
        if not identifier:
            raise missing("cancel[identifier]")
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
        return Reply(200, dict(adjustment))
