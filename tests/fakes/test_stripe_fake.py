"""The real stripe SDK against FakeStripe: wire format, errors, retries, idempotency, webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any, ClassVar

import pytest
import requests
import stripe

from tests.fakes.stripe import (
    DROP,
    DROP_AFTER_COMMIT,
    FakeStripe,
    make_event,
    parse_form,
    sign_webhook,
)

API_KEY = "sk_test_strata_fake_0000"
WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeStripe) -> FakeStripe:
    server.reset()
    return server


def client_for(fake: FakeStripe, *, retries: int = 0, api_key: str = API_KEY) -> stripe.StripeClient:
    # StripeClient retries nothing unless told to (the global stripe.max_network_retries is 2).
    return stripe.StripeClient(api_key, base_addresses={"api": fake.base_url}, max_network_retries=retries)


def error_of(exc: stripe.StripeError) -> dict[str, Any]:
    body = exc.json_body
    assert isinstance(body, dict)
    error: dict[str, Any] = body["error"]
    return error


def new_customer(client: stripe.StripeClient) -> str:
    return client.v1.customers.create({"email": "owner@acme.test"}).id


def meter_params(customer: str, value: int | str, identifier: str, **extra: Any) -> Any:
    return {
        "event_name": "strata_tokens",
        "payload": {"stripe_customer_id": customer, "value": str(value)},
        "identifier": identifier,
        **extra,
    }


# -- form parsing ------------------------------------------------------------------------------


def test_parse_form_nests_hashes_and_arrays() -> None:
    form = parse_form(
        "line_items[0][price]=price_a&line_items[0][quantity]=1&line_items[1][price]=price_b"
        "&metadata[tenant]=acme&metadata[0]=digit-key-stays-a-hash-entry&expand[]=x&expand[]=y"
        "&payload[stripe_customer_id]=cus_1&payload[value]=42&empty="
    )
    assert form["line_items"] == [{"price": "price_a", "quantity": "1"}, {"price": "price_b"}]
    assert form["metadata"] == {"tenant": "acme", "0": "digit-key-stays-a-hash-entry"}
    assert form["expand"] == ["x", "y"]
    assert form["payload"] == {"stripe_customer_id": "cus_1", "value": "42"}
    assert form["empty"] == ""
    assert parse_form("0=a&1=b") == {"0": "a", "1": "b"}


# -- auth and routing --------------------------------------------------------------------------


def test_missing_or_wrong_key_is_401(fake: FakeStripe) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        client_for(fake, api_key="sk_live_not_a_test_key").v1.customers.create({})
    assert caught.value.http_status == 401
    assert error_of(caught.value)["type"] == "invalid_request_error"

    raw = requests.post(f"{fake.base_url}/v1/customers", timeout=5)
    body = raw.json()
    assert raw.status_code == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in body["error"]["message"]
    assert fake.customers == {}


def test_unknown_route_is_stripe_404(fake: FakeStripe) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client_for(fake).raw_request("get", "/v1/no_such_things")
    assert caught.value.http_status == 404
    assert caught.value.user_message.startswith("Unrecognized request URL (GET: /v1/no_such_things)")


# -- customers ---------------------------------------------------------------------------------


def test_customer_create_and_retrieve(fake: FakeStripe) -> None:
    client = client_for(fake)
    created = client.v1.customers.create({"email": "owner@acme.test", "name": "Acme", "metadata": {"tenant": "acme"}})
    assert created.id.startswith("cus_")
    assert created.object == "customer"
    assert created.livemode is False

    fetched = client.v1.customers.retrieve(created.id)
    assert (fetched.id, fetched.email, fetched.name) == (created.id, "owner@acme.test", "Acme")
    assert fetched.metadata is not None
    assert fetched.metadata.to_dict() == {"tenant": "acme"}

    method, path, form, headers = fake.requests[0]
    assert (method, path) == ("POST", "/v1/customers")
    assert form == {"email": "owner@acme.test", "name": "Acme", "metadata": {"tenant": "acme"}}
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["Idempotency-Key"]


def test_unknown_customer_is_resource_missing(fake: FakeStripe) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client_for(fake).v1.customers.retrieve("cus_missing")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.user_message == "No such customer: 'cus_missing'"


# -- checkout and portal -----------------------------------------------------------------------


def test_checkout_session_parses_nested_params(fake: FakeStripe) -> None:
    client = client_for(fake)
    customer = new_customer(client)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer,
            "line_items": [{"price": "price_pro"}, {"price": "price_tokens"}],
            "success_url": "https://acme.example.com/billing/done?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://acme.example.com/billing/cancelled",
            "client_reference_id": "tenant-7",
            "metadata": {"tenant": "acme", "plan": "pro"},
            "subscription_data": {"metadata": {"tenant": "acme"}},
        }
    )
    assert session.id.startswith("cs_test_")
    assert session.object == "checkout.session"
    assert session.url == f"{fake.base_url}/c/pay/{session.id}"
    assert (session.status, session.customer, session.client_reference_id) == (
        "open",
        customer,
        "tenant-7",
    )

    form = fake.requests_to("/v1/checkout/sessions", "POST")[0].form
    assert form["line_items"] == [{"price": "price_pro"}, {"price": "price_tokens"}]
    assert form["metadata"] == {"tenant": "acme", "plan": "pro"}
    assert form["subscription_data"] == {"metadata": {"tenant": "acme"}}

    expanded = client.v1.checkout.sessions.retrieve(session.id, {"expand": ["line_items"]})
    assert expanded.line_items is not None
    assert [item.price.id for item in expanded.line_items.data if item.price] == ["price_pro", "price_tokens"]


def test_checkout_rejects_unknown_customer_and_missing_mode(fake: FakeStripe) -> None:
    client = client_for(fake)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.checkout.sessions.create(
            {"mode": "subscription", "customer": "cus_nope", "line_items": [{"price": "p"}]}
        )
    assert (unknown.value.http_status, unknown.value.param) == (400, "customer")
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.create({"line_items": [{"price": "p"}]})
    assert (missing.value.code, missing.value.param) == ("parameter_missing", "mode")


def test_billing_portal_session(fake: FakeStripe) -> None:
    client = client_for(fake)
    customer = new_customer(client)
    portal = client.v1.billing_portal.sessions.create(
        {"customer": customer, "return_url": "https://acme.example.com/settings"}
    )
    assert portal.id.startswith("bps_")
    assert portal.object == "billing_portal.session"
    assert portal.customer == customer
    assert portal.return_url == "https://acme.example.com/settings"
    assert portal.url.startswith(f"{fake.base_url}/p/session/")


def test_complete_checkout_creates_retrievable_subscription(fake: FakeStripe) -> None:
    client = client_for(fake)
    customer = new_customer(client)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "customer": customer,
            "line_items": [{"price": "price_pro", "quantity": 1}],
            "success_url": "https://acme.example.com/done",
            "subscription_data": {"metadata": {"tenant": "acme"}},
        }
    )
    subscription, event = fake.complete_checkout(session.id)

    assert event["type"] == "checkout.session.completed"
    assert event["id"].startswith("evt_") and event["object"] == "event"
    completed = event["data"]["object"]
    assert (completed["id"], completed["status"], completed["payment_status"]) == (
        session.id,
        "complete",
        "paid",
    )
    assert completed["subscription"] == subscription["id"]

    fetched = client.v1.subscriptions.retrieve(subscription["id"])
    assert fetched.object == "subscription"
    assert (fetched.status, fetched.customer) == ("active", customer)
    assert fetched.metadata.to_dict() == {"tenant": "acme"}
    assert fetched["items"].data[0].price.id == "price_pro"
    assert client.v1.checkout.sessions.retrieve(session.id).subscription == subscription["id"]
    with pytest.raises(ValueError):
        fake.complete_checkout(session.id)


# -- meter events ------------------------------------------------------------------------------


def test_meter_event_accepted_and_totalled(fake: FakeStripe) -> None:
    client = client_for(fake)
    customer = new_customer(client)
    first = client.v1.billing.meter_events.create(meter_params(customer, 120, "req-1"))
    client.v1.billing.meter_events.create(meter_params(customer, 30, "req-2"))

    assert first.object == "billing.meter_event"
    assert (first.identifier, first.payload.value) == ("req-1", "120")
    form = fake.requests_to("/v1/billing/meter_events")[0].form
    assert form["payload"] == {"stripe_customer_id": customer, "value": "120"}
    assert fake.meter_totals() == {customer: 150}
    assert [e["identifier"] for e in fake.meter_events] == ["req-1", "req-2"]


def test_duplicate_identifier_rejected_and_not_counted(fake: FakeStripe) -> None:
    client = client_for(fake, retries=2)
    customer = new_customer(client)
    client.v1.billing.meter_events.create(meter_params(customer, 10, "dup-1"))
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.billing.meter_events.create(meter_params(customer, 10, "dup-1"))

    assert caught.value.http_status == 400
    assert caught.value.user_message == "An event already exists with identifier dup-1."
    assert error_of(caught.value)["type"] == "invalid_request_error"
    assert caught.value.headers is not None
    assert caught.value.headers["Stripe-Should-Retry"] == "false"
    # A 400 is final: the SDK sent it once despite retries being enabled.
    assert len(fake.requests_to("/v1/billing/meter_events")) == 2
    assert fake.meter_totals() == {customer: 10}


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"payload": {"stripe_customer_id": "cus_x", "value": "1.5"}}, "payload[value]"),
        ({"payload": {"stripe_customer_id": "cus_x", "value": "ten"}}, "payload[value]"),
        ({"payload": {"stripe_customer_id": "cus_x"}}, "payload[value]"),
        ({"identifier": "x" * 101}, "identifier"),
        # Seconds from now, made into a timestamp when the test runs (not at collection, minutes before).
        ({"timestamp": -36 * 24 * 3600}, "timestamp"),
        ({"timestamp": 600}, "timestamp"),
        ({"event_name": ""}, "event_name"),
    ],
)
def test_meter_event_validation(fake: FakeStripe, overrides: dict[str, Any], param: str) -> None:
    if "timestamp" in overrides:
        overrides = {"timestamp": int(time.time()) + overrides["timestamp"]}
    params: Any = {**meter_params("cus_x", 5, "valid-id"), **overrides}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client_for(fake).v1.billing.meter_events.create(params)
    assert caught.value.http_status == 400
    assert caught.value.param == param
    assert fake.meter_events == []


def test_meter_event_accepts_backdated_timestamp_in_window(fake: FakeStripe) -> None:
    stamp = int(time.time()) - 34 * 24 * 3600
    client_for(fake).v1.billing.meter_events.create(meter_params("cus_x", "-3", "late-1", timestamp=stamp))
    assert fake.meter_events[0]["timestamp"] == stamp
    assert fake.meter_totals() == {"cus_x": -3}


def test_meter_event_adjustment_cancels_event(fake: FakeStripe) -> None:
    client = client_for(fake)
    client.v1.billing.meter_events.create(meter_params("cus_a", 7, "keep"))
    client.v1.billing.meter_events.create(meter_params("cus_a", 100, "wrong"))
    adjustment = client.v1.billing.meter_event_adjustments.create(
        {"event_name": "strata_tokens", "type": "cancel", "cancel": {"identifier": "wrong"}}
    )
    assert adjustment.object == "billing.meter_event_adjustment"
    assert adjustment.cancel is not None
    assert adjustment.cancel.identifier == "wrong"
    assert fake.meter_totals() == {"cus_a": 7}
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.billing.meter_events.create(meter_params("cus_a", 100, "wrong"))


# -- failures, retries, idempotency ------------------------------------------------------------


def test_500_then_success_is_retried_once(fake: FakeStripe) -> None:
    fake.fail_next = [500]
    fake.fail_routes = "/v1/billing/meter_events"
    event = client_for(fake, retries=2).v1.billing.meter_events.create(meter_params("cus_r", 4, "retry-1"))
    attempts = fake.requests_to("/v1/billing/meter_events")
    assert event.identifier == "retry-1"
    assert len(attempts) == 2
    # The SDK reuses one idempotency key across its retries of a request.
    assert attempts[0].headers["Idempotency-Key"] == attempts[1].headers["Idempotency-Key"]
    assert fake.meter_totals() == {"cus_r": 4}


def test_500_without_retries_raises_api_error(fake: FakeStripe) -> None:
    fake.fail_next = [500]
    with pytest.raises(stripe.APIError) as caught:
        client_for(fake).v1.billing.meter_events.create(meter_params("cus_r", 4, "r-0"))
    assert caught.value.http_status == 500
    assert error_of(caught.value)["type"] == "api_error"
    assert fake.meter_events == []


def test_fail_routes_leaves_other_routes_alone(fake: FakeStripe) -> None:
    fake.fail_next = [500]
    fake.fail_routes = ["/v1/billing/meter_events"]
    client = client_for(fake)
    customer = new_customer(client)
    assert fake.fail_next == [500]
    with pytest.raises(stripe.APIError):
        client.v1.billing.meter_events.create(meter_params(customer, 1, "r-1"))
    assert fake.fail_next == []


def test_outage_exhausts_retries(fake: FakeStripe) -> None:
    fake.outage = True
    with pytest.raises(stripe.APIError) as caught:
        client_for(fake, retries=1).v1.billing.meter_events.create(meter_params("c", 1, "o-1"))
    assert caught.value.http_status == 503
    assert len(fake.requests) == 2

    fake.outage_status = DROP
    with pytest.raises(stripe.APIConnectionError):
        client_for(fake).v1.billing.meter_events.create(meter_params("c", 1, "o-2"))

    fake.outage = False
    client_for(fake).v1.billing.meter_events.create(meter_params("c", 1, "o-3"))
    assert fake.meter_totals() == {"c": 1}


def test_dropped_connection(fake: FakeStripe) -> None:
    fake.fail_next = [DROP]
    with pytest.raises(stripe.APIConnectionError) as caught:
        client_for(fake).v1.billing.meter_events.create(meter_params("c", 2, "d-1"))
    assert caught.value.should_retry is True
    assert fake.meter_events == []

    fake.fail_next = [DROP]
    client_for(fake, retries=1).v1.billing.meter_events.create(meter_params("c", 2, "d-1"))
    assert fake.meter_totals() == {"c": 2}


def test_lost_response_is_replayed_by_idempotency_key(fake: FakeStripe) -> None:
    # The event is stored but the answer never arrives; the SDK's retry must not look like a duplicate.
    fake.fail_next = [DROP_AFTER_COMMIT]
    event = client_for(fake, retries=1).v1.billing.meter_events.create(meter_params("c", 9, "lost-1"))
    assert event.identifier == "lost-1"
    assert len(fake.requests_to("/v1/billing/meter_events")) == 2
    assert fake.meter_totals() == {"c": 9}


def test_idempotency_key_replay(fake: FakeStripe) -> None:
    client = client_for(fake)
    params: Any = {"email": "same@acme.test"}
    first = client.v1.customers.create(params, {"idempotency_key": "signup-42"})
    again = client.v1.customers.create(params, {"idempotency_key": "signup-42"})
    assert again.id == first.id
    assert len(fake.customers) == 1
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"

    other = client.v1.customers.create(params, {"idempotency_key": "signup-43"})
    assert other.id != first.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "else@acme.test"}, {"idempotency_key": "signup-42"})


def test_rate_limit_follows_should_retry_header(fake: FakeStripe) -> None:
    fake.fail_next = [429]
    with pytest.raises(stripe.RateLimitError):
        client_for(fake, retries=2).v1.billing.meter_events.create(meter_params("c", 1, "rl-1"))
    assert len(fake.requests) == 1

    fake.reset()
    fake.fail_next = [429]
    fake.should_retry_header = True
    client_for(fake, retries=2).v1.billing.meter_events.create(meter_params("c", 1, "rl-2"))
    assert len(fake.requests) == 2
    assert fake.meter_totals() == {"c": 1}


def test_latency_is_applied(fake: FakeStripe) -> None:
    fake.latency = 0.2
    started = time.monotonic()
    client_for(fake).v1.customers.create({})
    assert time.monotonic() - started >= 0.2


def test_global_configuration_reaches_the_fake(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    monkeypatch.setattr(stripe, "api_base", fake.base_url)
    customer = stripe.Customer.create(email="global@acme.test")
    assert fake.customers[customer.id]["email"] == "global@acme.test"


# -- webhooks ----------------------------------------------------------------------------------


def test_signed_webhook_verifies_and_tampering_is_rejected() -> None:
    event = make_event("checkout.session.completed", {"id": "cs_test_1", "object": "checkout.session"})
    payload = json.dumps(event)
    header = sign_webhook(payload, WEBHOOK_SECRET)

    constructed = stripe.Webhook.construct_event(payload, header, WEBHOOK_SECRET)
    assert (constructed.id, constructed.type) == (event["id"], "checkout.session.completed")
    assert constructed.data.object.id == "cs_test_1"
    assert stripe.Webhook.construct_event(payload.encode(), header, WEBHOOK_SECRET).id == event["id"]

    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace("cs_test_1", "cs_test_2"), header, WEBHOOK_SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    stale = sign_webhook(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, stale, WEBHOOK_SECRET)


def test_make_event_shape() -> None:
    event = make_event("invoice.paid", {"id": "in_1"}, event_id="evt_fixed", created=1700000000)
    assert event == {
        "id": "evt_fixed",
        "object": "event",
        "api_version": stripe.api_version,
        "created": 1700000000,
        "data": {"object": {"id": "in_1"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "invoice.paid",
    }


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[bytes, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stripe.Webhook.construct_event(body, self.headers["Stripe-Signature"], WEBHOOK_SECRET)
        self.received.append((body, self.headers["Stripe-Signature"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_hosted_checkout_page_pays_redirects_and_delivers_webhook(fake: FakeStripe) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    Thread(target=receiver.serve_forever, daemon=True).start()
    _Receiver.received = []
    fake.webhook_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    fake.webhook_secret = WEBHOOK_SECRET
    try:
        client = client_for(fake)
        session = client.v1.checkout.sessions.create(
            {
                "mode": "subscription",
                "customer": new_customer(client),
                "line_items": [{"price": "price_pro", "quantity": 1}],
                "success_url": "https://acme.example.com/done?cs={CHECKOUT_SESSION_ID}",
            }
        )
        assert session.url is not None
        page = requests.get(session.url, timeout=5)
        assert page.headers["Content-Type"].startswith("text/html")
        assert session.id in page.text

        paid = requests.post(session.url, allow_redirects=False, timeout=5)
        assert paid.status_code == 303
        assert paid.headers["Location"] == f"https://acme.example.com/done?cs={session.id}"
        assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"

        deadline = time.monotonic() + 5
        while not fake.webhook_deliveries and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.webhook_deliveries[0][1] == 200
        delivered = json.loads(_Receiver.received[0][0])
        assert delivered["type"] == "checkout.session.completed"
        assert delivered["data"]["object"]["id"] == session.id
    finally:
        fake.webhook_url = None
        fake.webhook_secret = None
        receiver.shutdown()
        receiver.server_close()
