"""Billing fixtures: the real stripe SDK against FakeStripe, signed webhooks, paying tenants."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django_tenants.utils import tenant_context
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ai.llm import Usage
from billing.models import Plan, Subscription, TenantUsagePeriod, UsageEvent, WebhookEvent
from billing.services import usage_record
from core.models import User
from tenants.models import Membership, Tenant
from tests.conftest import host_client
from tests.factories import PASSWORD, UserFactory
from tests.fakes.stripe import FakeStripe, make_event, sign_webhook

API_KEY = "sk_test_strata_billing_0000"
WEBHOOK_SECRET = "whsec_strata_billing_test"
PRO_PRICE, PRO_TOKENS_PRICE = "price_pro_base", "price_pro_tokens"
ENTERPRISE_PRICE = "price_enterprise_base"

_keys = itertools.count()


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[FakeStripe]:
    with FakeStripe(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _billing_tables_empty(db) -> None:  # noqa: ANN001
    """Live-server tests (chat over WebSocket/SSE) commit usage for the session worlds; billing
    tests count rows, so each starts from empty tables. The deletes happen inside the test's
    transaction and are rolled back with it: other tests still see what was committed."""
    UsageEvent.objects.all().delete()
    TenantUsagePeriod.objects.all().delete()
    # Every tenant keeps its subscription (it holds the plan); Stripe's side starts blank.
    Subscription.objects.update(
        stripe_customer_id="",
        stripe_subscription_id="",
        checkout_session_id="",
        status="",
        current_period_end=None,
        past_due_since=None,
        last_event_at=None,
    )
    WebhookEvent.objects.all().delete()


@pytest.fixture
def stripe_fake(stripe_server: FakeStripe, settings) -> Iterator[FakeStripe]:  # noqa: ANN001
    """Stripe switched on and pointed at the fake; no SDK retries unless a test asks for them."""
    stripe_server.reset()
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_API_BASE = stripe_server.base_url
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.STRIPE_TIMEOUT_SECONDS = 5
    yield stripe_server
    stripe_server.reset()


@pytest.fixture
def paid_plans(db) -> None:  # noqa: ANN001
    Plan.objects.filter(slug="pro").update(stripe_price_id=PRO_PRICE, stripe_metered_price_id=PRO_TOKENS_PRICE)
    Plan.objects.filter(slug="enterprise").update(stripe_price_id=ENTERPRISE_PRICE)


def signup_payload(subdomain: str, plan: str = "pro") -> dict[str, str]:
    return {
        "organisation": "Initech",
        "subdomain": subdomain,
        "email": f"boss@{subdomain}.test",
        "password": PASSWORD,
        "plan": plan,
    }


SendWebhook = Callable[..., Any]


@pytest.fixture
def send_webhook(public_client: APIClient) -> SendWebhook:
    """POST an event to the webhook the way Stripe does: raw JSON body, `Stripe-Signature` header."""

    def send(
        event: dict[str, Any],
        *,
        secret: str = WEBHOOK_SECRET,
        signature: str | None = None,
        timestamp: int | None = None,
        body: bytes | None = None,
    ) -> Any:
        raw = body if body is not None else json.dumps(event, indent=2).encode()
        header = signature if signature is not None else sign_webhook(raw, secret, timestamp)
        extra = {"HTTP_STRIPE_SIGNATURE": header} if header else {}
        return public_client.post("/api/billing/webhook/", data=raw, content_type="application/json", **extra)

    return send


@dataclass
class PaidTenant:
    tenant: Tenant
    owner_token: str
    member_token: str
    customer_id: str
    session_id: str
    subscription: dict[str, Any]

    @property
    def host(self) -> str:
        return f"{self.tenant.subdomain}.localhost"

    def client(self, token: str | None = None) -> APIClient:
        return host_client(self.host, token)

    def refresh(self) -> Tenant:
        self.tenant.refresh_from_db()
        return self.tenant

    @property
    def row(self) -> Subscription:
        return Subscription.objects.get(tenant=self.tenant)


def bare_tenant(name: str, plan: str = "free") -> Tenant:
    """A tenant row and its subscription, without a schema (enough for billing and the admin)."""
    tenant = Tenant.objects.create(name=name, subdomain=name, schema_name=name)
    Subscription.objects.create(tenant=tenant, plan=Plan.objects.get(slug=plan))
    return tenant


def add_member(tenant: Tenant, role: str = Membership.Role.MEMBER) -> tuple[User, str]:
    user = UserFactory()
    Membership.objects.create(user=user, tenant=tenant, role=role)
    return user, Token.objects.get_or_create(user=user)[0].key


@pytest.fixture
def pending_tenant(
    stripe_fake: FakeStripe, paid_plans: None, public_client: APIClient, unique_subdomain: str
) -> PaidTenant:
    """Signed up on Pro; Checkout started, not paid."""
    response = public_client.post("/api/signup/", signup_payload(unique_subdomain), format="json")
    assert response.status_code == 201, response.content
    tenant = Tenant.objects.get(subdomain=unique_subdomain)
    row = Subscription.objects.get(tenant=tenant)
    _, member_token = add_member(tenant)
    return PaidTenant(
        tenant, response.json()["token"], member_token, row.stripe_customer_id, row.checkout_session_id, {}
    )


@pytest.fixture
def paid_tenant(pending_tenant: PaidTenant, stripe_fake: FakeStripe, send_webhook: SendWebhook) -> PaidTenant:
    """Pending tenant whose Checkout was paid and whose `checkout.session.completed` arrived."""
    subscription, event = stripe_fake.complete_checkout(pending_tenant.session_id)
    assert send_webhook(event).status_code == 200
    pending_tenant.subscription = subscription
    assert pending_tenant.refresh().status == Tenant.Status.ACTIVE
    return pending_tenant


def event_at(event_type: str, obj: dict[str, Any], *, seconds_ago: int = 0, **kwargs: Any) -> dict[str, Any]:
    return make_event(event_type, obj, created=int(time.time()) - seconds_ago, **kwargs)


def invoice(paid: PaidTenant, *, status: str = "open") -> dict[str, Any]:
    """An invoice object as API 2025-03-31+ renders it (subscription under parent.subscription_details)."""
    return {
        "id": f"in_test{next(_keys)}",
        "object": "invoice",
        "customer": paid.customer_id,
        "status": status,
        "amount_due": 4900,
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": paid.subscription["id"]}},
    }


def record_usage(
    tenant: Tenant,
    *,
    tokens: int = 100,
    feature: str = "summarise",
    model: str = "claude-sonnet-4-6",
    key: str | None = None,
) -> UsageEvent:
    with tenant_context(tenant):
        return usage_record(
            tenant_id=tenant.pk,
            user_id=None,
            feature=feature,
            model=model,
            usage=Usage(input_tokens=tokens - tokens // 4, output_tokens=tokens // 4),
            request_key=key or f"test:{next(_keys)}",
        )
