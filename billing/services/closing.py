"""A closing workspace's billing: the usage Stripe has not had yet is sent, then its subscription is cancelled."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe
from django.db import transaction
from django.utils import timezone

from billing.models import AllowanceReservation, Plan, Subscription, UsageEvent
from billing.services.meter import usage_sync
from billing.services.stripe import billing_enabled, stripe_client
from billing.services.subscriptions import FREE_PLAN_SLUG
from tenants.models import Tenant

logger = logging.getLogger(__name__)

_ENDED = ("canceled", "incomplete_expired")


class BillingCloseIncomplete(Exception):
    """The tenant's billing could not be settled yet (usage still pending, Stripe unavailable): try again later."""


@dataclass
class BillingClosed:
    usage_sent: int = 0
    subscription_cancelled: bool = False


def tenant_billing_close(*, tenant: Tenant) -> BillingClosed:
    """Settle a closed tenant with Stripe: its pending usage rows are sent as meter events, then its
    subscription is cancelled (invoicing now what it owes); it is left on the free plan, so a
    restored workspace starts unpaid. Safe to run again; raises ``BillingCloseIncomplete`` while
    calls are still in flight, a row is still pending or Stripe does not answer.

    Usage goes first: Stripe bills a meter event only while the subscription lives.
    """
    closed = BillingClosed()
    if billing_enabled():
        if AllowanceReservation.objects.for_tenant(tenant).filter(expires_at__gt=timezone.now()).exists():
            raise BillingCloseIncomplete("calls still in flight: their usage is not recorded yet")
        report = usage_sync(tenant_id=tenant.pk)
        closed.usage_sent = report.delivered
        pending = UsageEvent.objects.for_tenant(tenant).filter(meter_status=UsageEvent.MeterStatus.PENDING).count()
        if pending:
            reason = report.stopped or "; ".join(report.errors[:3]) or "not sent yet"
            raise BillingCloseIncomplete(f"{pending} usage row(s) not sent to Stripe: {reason}")
        closed.subscription_cancelled = _stripe_subscription_cancel(tenant)
        _stripe_checkout_expire(tenant)
    _subscription_end(tenant)
    return closed


def _stripe_checkout_expire(tenant: Tenant) -> None:
    """An open Checkout Session (an unpaid signup, an upgrade under way) could still be paid, and
    would start a subscription for a closed workspace: it is expired."""
    subscription = Subscription.objects.for_tenant(tenant).first()
    if subscription is None or not subscription.checkout_session_id:
        return
    try:
        stripe_client().v1.checkout.sessions.expire(subscription.checkout_session_id)
    except stripe.InvalidRequestError:
        pass  # already paid (the subscription is cancelled above) or expired: nothing left to stop
    except stripe.StripeError as exc:
        raise BillingCloseIncomplete(f"Stripe unavailable: {exc.user_message or exc}") from exc


def _stripe_subscription_cancel(tenant: Tenant) -> bool:
    subscription = Subscription.objects.for_tenant(tenant).first()
    if subscription is None or not subscription.stripe_subscription_id or subscription.status in _ENDED:
        return False
    subscription_id = subscription.stripe_subscription_id
    client = stripe_client()
    try:
        client.v1.subscriptions.cancel(
            subscription_id,
            params={"invoice_now": True, "prorate": True},
            options={"idempotency_key": f"workspace-close-{tenant.pk}-{subscription_id}"},
        )
    except stripe.InvalidRequestError as exc:
        # Already cancelled (in the portal, or by an earlier run whose answer was lost) is done.
        try:
            status = client.v1.subscriptions.retrieve(subscription_id).status
        except stripe.StripeError:
            status = ""
        if status not in _ENDED:
            raise BillingCloseIncomplete(
                f"Stripe refused to cancel {subscription_id}: {exc.user_message or exc}"
            ) from exc
    except stripe.StripeError as exc:
        raise BillingCloseIncomplete(f"Stripe unavailable: {exc.user_message or exc}") from exc
    return True


@transaction.atomic
def _subscription_end(tenant: Tenant) -> None:
    subscription = Subscription.objects.for_tenant(tenant).select_for_update().first()
    if subscription is None:
        return
    fields = {"past_due_since", "checkout_session_id"}
    subscription.past_due_since = None
    subscription.checkout_session_id = ""
    if subscription.stripe_subscription_id and subscription.status not in _ENDED:
        subscription.status = "canceled"
        fields.add("status")
    free = Plan.objects.filter(slug=FREE_PLAN_SLUG).first()
    if free is not None and subscription.plan_id != free.pk:
        subscription.plan = free
        fields.add("plan")
    subscription.save(update_fields=[*sorted(fields), "updated"])


def usage_pending_of(*, tenant: Tenant) -> int:
    return UsageEvent.objects.for_tenant(tenant).filter(meter_status=UsageEvent.MeterStatus.PENDING).count()
