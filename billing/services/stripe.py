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
from tenants.audit.services import Action, audit_record
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
    *,
    subdomain: str,
    tenant_url: str,
    email: str,
    organisation: str,
    plan: Plan,
    customer_id: str | None = None,
    return_path: str = "",
) -> CheckoutStarted:
    """A subscription Checkout Session, for ``customer_id`` or a new customer (idempotent by subdomain and
    e-mail). Stripe sends the payer back to ``tenant_url`` + ``return_path``."""
    if not plan.stripe_price_id:
        # Plans without a price are not offered (billing.selectors.plan_is_offered); this is the backstop.
        raise ApplicationError(
            f"The {plan.name} plan is not available at the moment; please choose another plan.",
            code="plan_unavailable",
            status=409,
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
                "success_url": f"{tenant_url}{return_path}?checkout=success",
                "cancel_url": f"{tenant_url}{return_path}?checkout=cancelled",
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


def _live_subscription(tenant: Tenant) -> Subscription | None:
    """The tenant's Stripe subscription if it is one Stripe still bills (changed through the portal)."""
    subscription = Subscription.objects.for_tenant(tenant).select_related("plan").first()
    if subscription is None or not subscription.stripe_subscription_id:
        return None
    return subscription if subscription.status in _LIVE_STATUSES else None


_LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid")
PORTAL_FLOWS = ("update", "cancel")


def portal_session_start(*, tenant: Tenant, flow: str | None = None) -> str:
    """A Stripe customer-portal session (card, invoices, plan, cancellation) for the tenant's customer.

    ``flow`` opens the portal on one task for the live subscription: ``"update"`` (choose another
    plan) or ``"cancel"``; people come back to the billing page either way.
    """
    subscription = Subscription.objects.for_tenant(tenant).exclude(stripe_customer_id="").first()
    if subscription is None:
        raise ApplicationError("This organisation has no billing account yet.", code="no_billing_account", status=409)
    params: dict[str, Any] = {"customer": subscription.stripe_customer_id, "return_url": tenant.url}
    if flow is not None:
        live = _live_subscription(tenant)
        if live is None:
            raise ApplicationError(
                "This organisation has no subscription to change.", code="no_subscription", status=409
            )
        params["return_url"] = f"{tenant.url}billing/"
        after = {"type": "redirect", "redirect": {"return_url": f"{tenant.url}billing/?changed=1"}}
        if flow == "cancel":
            kind = {"type": "subscription_cancel", "subscription_cancel": {"subscription": live.stripe_subscription_id}}
        else:
            kind = {"type": "subscription_update", "subscription_update": {"subscription": live.stripe_subscription_id}}
        params["flow_data"] = {**kind, "after_completion": after}
    try:
        session = stripe_client().v1.billing_portal.sessions.create(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise stripe_unavailable(exc) from exc
    return session.url


@dataclass(frozen=True)
class PlanChange:
    """Where a plan change goes next: a Stripe page (``url``), or done at once (``changed``)."""

    url: str | None
    changed: bool


def plan_change_start(*, tenant: Tenant, user: User, plan: Plan) -> PlanChange:
    """An owner picks another plan on the billing page.

    The first paid plan goes through Checkout (the webhook then records the plan); a tenant Stripe
    already bills changes or cancels in the customer portal (the webhook again); a tenant no one
    bills moves to a free plan at once. Without Stripe, the plans customers are offered (free
    ones, or any with DEBUG on) change at once too.
    """
    subscription = Subscription.objects.select_related("plan").get(tenant=tenant)
    if plan.pk == subscription.plan_id:
        raise ApplicationError(f"This organisation is already on the {plan.name} plan.", code="same_plan", status=409)
    if tenant.status != Tenant.Status.ACTIVE:
        raise ApplicationError("Complete the payment first.", code="payment_pending", status=409)
    if billing_enabled() and _live_subscription(tenant) is not None:
        return PlanChange(
            url=portal_session_start(tenant=tenant, flow="update" if plan.is_paid else "cancel"), changed=False
        )
    if plan.is_paid and billing_enabled():
        started = checkout_start(
            subdomain=tenant.subdomain,
            tenant_url=tenant.url,
            email=user.email,
            organisation=tenant.name,
            plan=plan,
            customer_id=subscription.stripe_customer_id or None,
            return_path="billing/",
        )
        subscription.stripe_customer_id = started.customer_id
        subscription.checkout_session_id = started.session_id
        subscription.save(update_fields=["stripe_customer_id", "checkout_session_id", "updated"])
        return PlanChange(url=started.url, changed=False)
    before = subscription.plan.slug
    subscription.plan = plan
    subscription.save(update_fields=["plan", "updated"])
    audit_record(tenant=tenant, action=Action.PLAN_CHANGED, actor=user, changes={"plan": [before, plan.slug]})
    return PlanChange(url=None, changed=True)
