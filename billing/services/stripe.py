"""Stripe: customers, Checkout, the customer portal. Calls go out before or after our own
transactions, never inside them, so a Stripe failure leaves no half-made rows behind."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import stripe
from django.conf import settings

from core.exceptions import ApplicationError


def billing_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@functools.lru_cache(maxsize=4)
def _client_for(api_key: str, api_base: str | None, retries: int) -> stripe.StripeClient:
    base_addresses = {"api": api_base} if api_base else {}
    return stripe.StripeClient(api_key, base_addresses=base_addresses, max_network_retries=retries)


def stripe_client() -> stripe.StripeClient:
    if not billing_enabled():
        raise ApplicationError("Billing is not configured on this server.", code="billing_unavailable", status=503)
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES)


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


def checkout_start(*, subdomain: str, tenant_url: str, email: str, organisation: str, plan) -> CheckoutStarted:
    """Create (or reuse, by idempotency key) the Stripe customer and a subscription Checkout Session."""
    if not plan.stripe_price_id:
        raise ApplicationError(f"The {plan.name} plan has no Stripe price configured.", code="billing_unavailable", status=503)
    client = stripe_client()
    line_items = [{"price": plan.stripe_price_id, "quantity": 1}]
    if plan.stripe_metered_price_id:
        line_items.append({"price": plan.stripe_metered_price_id})
    metadata = {"subdomain": subdomain, "plan": plan.slug}
    try:
        customer = client.v1.customers.create(
            params={"email": email, "name": organisation, "metadata": metadata},
            options={"idempotency_key": f"customer-{subdomain}-{email}"},
        )
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer": customer.id,
                "line_items": line_items,
                "client_reference_id": subdomain,
                "success_url": f"{tenant_url}?checkout=success",
                "cancel_url": f"{tenant_url}?checkout=cancelled",
                "metadata": metadata,
                "subscription_data": {"metadata": metadata},
            }
        )
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    return CheckoutStarted(customer_id=customer.id, session_id=session.id, url=session.url)


def checkout_session_start(*, tenant, user) -> str:
    """A fresh Checkout Session for a tenant still waiting for its first payment."""
    from billing.models import Subscription

    subscription = Subscription.objects.filter(tenant=tenant).first()
    started = checkout_start(
        subdomain=tenant.subdomain, tenant_url=tenant.url, email=user.email, organisation=tenant.name, plan=tenant.plan
    )
    Subscription.objects.update_or_create(
        tenant=tenant,
        defaults={"stripe_customer_id": subscription.stripe_customer_id if subscription and subscription.stripe_customer_id else started.customer_id, "checkout_session_id": started.session_id},
    )
    return started.url


def portal_session_start(*, tenant) -> str:
    from billing.models import Subscription

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
