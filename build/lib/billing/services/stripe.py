"""Stripe: customers, Checkout, the customer portal. Calls go out before or after our own
transactions, never inside them, so a Stripe failure leaves no half-made rows behind."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

from billing.models import Plan, Subscription
from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.models import Tenant


def billing_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str | None, retries: int, timeout: float) -> stripe.StripeClient:
    base_addresses = {"api": api_base} if api_base else {}
    # The SDK's default read timeout is 80 s; a hung Stripe must not hold a request or the sync job that long.
    http_client = stripe.RequestsClient(timeout=timeout)
    return stripe.StripeClient(
        api_key, base_addresses=base_addresses, max_network_retries=retries, http_client=http_client
    )


def stripe_client() -> stripe.StripeClient:
    if not billing_enabled():
        raise ApplicationError("Billing is not configured on this server.", code="billing_unavailable", status=503)
    return _client_for(
        settings.STRIPE_SECRET_KEY,
        settings.STRIPE_API_BASE,
        settings.STRIPE_MAX_NETWORK_RETRIES,
        settings.STRIPE_TIMEOUT_SECONDS,
    )


def stripe_unavailable(exc: stripe.StripeError) -> ApplicationError:
    return ApplicationError(
        "The payment provider is unavailable; nothing was charged. Please try again shortly.",
        code="billing_unavailable",
        status=503,
        extra={"stripe_request_id": getattr(exc, "request_id", None)},
    )


@dataclass(frozen=True)
class CheckoutStarted:
    customer_id: str
    session_id: str
    url: str


def checkout_start(
    *, subdomain: str, tenant_url: str, email: str, organisation: str, plan: Plan, customer_id: str | None = None
) -> CheckoutStarted:
    """A subscription Checkout Session, for ``customer_id`` or a new customer (idempotent by subdomain and e-mail)."""
    if not plan.stripe_price_id:
        raise ApplicationError(
            f"The {plan.name} plan has no Stripe price configured.", code="billing_unavailable", status=503
        )
    client = stripe_client()
    line_items: list[dict[str, Any]] = [{"price": plan.stripe_price_id, "quantity": 1}]
    if plan.stripe_metered_price_id:
        line_items.append({"price": plan.stripe_metered_price_id})
    metadata = {"subdomain": subdomain, "plan": plan.slug}
    try:
        if customer_id is None:
            customer_id = client.v1.customers.create(
                params={"email": email, "name": organisation, "metadata": metadata},
                options={"idempotency_key": f"customer-{subdomain}-{email}"},
            ).id
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer_id,
                "line_items": line_items,  # type: ignore[typeddict-item]
                "client_reference_id": subdomain,
                "success_url": f"{tenant_url}?checkout=success",
                "cancel_url": f"{tenant_url}?checkout=cancelled",
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
            }
        )
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    return CheckoutStarted(customer_id=customer_id, session_id=session.id, url=session.url or "")


def checkout_session_start(*, tenant: Tenant, user: User) -> str:
    """A fresh Checkout Session for a tenant still waiting for its first payment (its owner asks)."""
    if tenant.status != Tenant.Status.PENDING_PAYMENT:
        raise ApplicationError(
            "This organisation has already paid; use the billing portal instead.", code="already_paid", status=409
        )
    subscription = Subscription.objects.select_related("plan").get(tenant=tenant)
    if not subscription.plan.is_paid:
        raise ApplicationError("This organisation's plan needs no payment.", code="no_payment_needed", status=409)
    started = checkout_start(
        subdomain=tenant.subdomain,
        tenant_url=tenant.url,
        email=user.email,
        organisation=tenant.name,
        plan=subscription.plan,
        customer_id=subscription.stripe_customer_id or None,
    )
    subscription.stripe_customer_id = started.customer_id
    subscription.checkout_session_id = started.session_id
    subscription.save(update_fields=["stripe_customer_id", "checkout_session_id", "updated"])
    return started.url


def portal_session_start(*, tenant: Tenant) -> str:
    """A Stripe customer-portal session (card, invoices, plan, cancellation) for the tenant's customer."""
    subscription = Subscription.objects.filter(tenant=tenant).exclude(stripe_customer_id="").first()
    if subscription is None:
        raise ApplicationError("This organisation has no billing account yet.", code="no_billing_account", status=409)
    try:
        session = stripe_client().v1.billing_portal.sessions.create(
            params={"customer": subscription.stripe_customer_id, "return_url": tenant.url}
        )
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    return session.url
