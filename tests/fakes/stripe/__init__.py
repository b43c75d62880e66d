"""A wire-level fake of the Stripe v1 API endpoints Strata uses, plus webhook signing helpers.

One module per resource (customers, checkout, billing_portal, subscriptions, meter_events,
webhooks: events and their signed delivery), over the shared state (state) and the wire format
(wire); server holds FakeStripe itself: the HTTP server and the request pipeline."""

from tests.fakes.stripe.server import DROP, DROP_AFTER_COMMIT, FakeStripe
from tests.fakes.stripe.webhooks import API_VERSION, make_event, sign_webhook
from tests.fakes.stripe.wire import Json, RecordedRequest, parse_form

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
