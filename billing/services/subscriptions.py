"""A tenant's subscription as Stripe's events describe it, and what that means for the tenant.

Events may arrive late, twice or out of order. Each handler runs in the webhook's transaction
with the Subscription row locked; an event older than the newest one applied
(``Subscription.last_event_at``) may fill in missing ids but never changes the state.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import Plan, Subscription
from tenants.audit.services import Action, audit_record
from tenants.models import Tenant
from tenants.services.status import tenant_reactivate, tenant_suspend

NONPAYMENT_REASON = "Suspended for non-payment: the subscription stayed past due beyond the grace period."
_GOOD_STANDING = ("active", "trialing")
_OVERDUE = ("past_due", "unpaid")
_ENDED = ("canceled", "incomplete_expired")
FREE_PLAN_SLUG = "free"


def _ts(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), tz=dt.UTC) if value else None


def _locked(queryset: Any) -> Subscription | None:
    return queryset.select_for_update(of=("self",)).select_related("tenant", "plan").first()


def _subscription_find(*, subscription_id: str = "", customer_id: str = "", subdomain: str = "") -> Subscription | None:
    """The tenant's Subscription row, locked for this transaction, by the strongest id the event has."""
    if subscription_id:
        found = _locked(Subscription.objects.filter(stripe_subscription_id=subscription_id))
        if found is not None:
            return found
    if customer_id:
        found = _locked(Subscription.objects.filter(stripe_customer_id=customer_id).order_by("-id"))
        if found is not None:
            return found
    if subdomain:
        tenant = Tenant.objects.filter(subdomain=subdomain).first()
        if tenant is not None:
            return _locked(Subscription.objects.for_tenant(tenant))
    return None


def _is_stale(subscription: Subscription, event_at: dt.datetime) -> bool:
    return subscription.last_event_at is not None and event_at < subscription.last_event_at


def _suspended_for_nonpayment(tenant: Tenant) -> bool:
    return tenant.status == Tenant.Status.SUSPENDED and tenant.suspended_reason == NONPAYMENT_REASON


def _tenant_in_good_standing(tenant: Tenant) -> str:
    """Payment is fine: a waiting tenant starts, one we suspended for non-payment comes back."""
    if tenant.status == Tenant.Status.PENDING_PAYMENT:
        tenant_reactivate(tenant=tenant)
        return "tenant activated"
    if _suspended_for_nonpayment(tenant):
        tenant_reactivate(tenant=tenant)
        return "tenant reactivated"
    return ""


def _save(subscription: Subscription, fields: set[str]) -> None:
    if fields:
        subscription.save(update_fields=[*sorted(fields), "updated"])


def _fill_ids(subscription: Subscription, *, customer_id: str, subscription_id: str) -> set[str]:
    changed: set[str] = set()
    if customer_id and not subscription.stripe_customer_id:
        subscription.stripe_customer_id = customer_id
        changed.add("stripe_customer_id")
    # A new subscription replaces one that never started or has ended, never a live one.
    replaceable = not subscription.stripe_subscription_id or subscription.status in (*_ENDED, "incomplete")
    if subscription_id and subscription_id != subscription.stripe_subscription_id and replaceable:
        subscription.stripe_subscription_id = subscription_id
        changed.add("stripe_subscription_id")
    return changed


def _outcome(*parts: str) -> str:
    return "; ".join(part for part in parts if part) or "no change"


def subscription_start(
    *, tenant: Tenant, plan: Plan, customer_id: str = "", checkout_session_id: str = ""
) -> Subscription:
    """A new tenant's subscription: its plan, and for a paid plan the Stripe customer and Checkout."""
    return Subscription.objects.create(
        tenant=tenant, plan=plan, stripe_customer_id=customer_id, checkout_session_id=checkout_session_id
    )


# --- event handlers (called by billing.services.webhooks inside its transaction) --------------


def checkout_completed(*, session: dict[str, Any], event_at: dt.datetime) -> str:
    subdomain = session.get("client_reference_id") or (session.get("metadata") or {}).get("subdomain") or ""
    customer_id = session.get("customer") or ""
    subscription = _subscription_find(subdomain=subdomain, customer_id=customer_id)
    if subscription is None:
        return "ignored: no tenant for this Checkout Session"
    changed = _fill_ids(subscription, customer_id=customer_id, subscription_id=session.get("subscription") or "")
    paid = session.get("status") == "complete" and session.get("payment_status") in ("paid", "no_payment_required")
    if not paid:
        _save(subscription, changed)
        return _outcome("ids recorded", "not paid yet")
    if _is_stale(subscription, event_at):
        _save(subscription, changed)
        return _outcome("ids recorded", "state ignored: older than the last event applied")
    if subscription.status in _ENDED and "stripe_subscription_id" not in changed:
        _save(subscription, changed)
        return "ignored: the subscription has already ended"
    subscription.status = "active"
    subscription.last_event_at = event_at
    subscription.past_due_since = None
    changed |= {"status", "last_event_at", "past_due_since"}
    # The session names the plan it sold (a signup's, or an upgrade from the billing page).
    slug = (session.get("metadata") or {}).get("plan") or ""
    plan_note = _plan_change(subscription, Plan.objects.filter(slug=slug).first() if slug else None, changed)
    _save(subscription, changed)
    return _outcome("subscription active", plan_note, _tenant_in_good_standing(subscription.tenant))


def _period_end(obj: dict[str, Any]) -> dt.datetime | None:
    # Since API version 2025-03-31 the billing period lives on the subscription items.
    items = (obj.get("items") or {}).get("data") or []
    ends = [item.get("current_period_end") for item in items if item.get("current_period_end")]
    return _ts(max(ends)) if ends else _ts(obj.get("current_period_end"))


def _plan_for_prices(obj: dict[str, Any]) -> Plan | None:
    prices = {((item.get("price") or {}).get("id")) for item in (obj.get("items") or {}).get("data") or []}
    prices.discard(None)
    if not prices:
        return None
    return Plan.objects.filter(stripe_price_id__in=prices).order_by("-monthly_price_cents").first()


def subscription_changed(*, obj: dict[str, Any], event_at: dt.datetime, deleted: bool = False) -> str:
    """customer.subscription.created / updated / deleted: status, period, plan."""
    subdomain = (obj.get("metadata") or {}).get("subdomain") or ""
    subscription = _subscription_find(
        subscription_id=obj.get("id") or "", customer_id=obj.get("customer") or "", subdomain=subdomain
    )
    if subscription is None:
        return "ignored: no tenant for this subscription"
    changed = _fill_ids(subscription, customer_id=obj.get("customer") or "", subscription_id=obj.get("id") or "")
    if _is_stale(subscription, event_at):
        _save(subscription, changed)
        return "ignored: older than the last event applied"
    if subscription.stripe_subscription_id and subscription.stripe_subscription_id != obj.get("id"):
        # An old or duplicate subscription of the same customer must not overwrite the live one.
        _save(subscription, changed)
        return "ignored: not the tenant's current subscription"
    status = "canceled" if deleted else (obj.get("status") or subscription.status)
    subscription.status = status
    subscription.current_period_end = _period_end(obj) or subscription.current_period_end
    subscription.last_event_at = event_at
    changed |= {"status", "current_period_end", "last_event_at", "past_due_since"}
    tenant = subscription.tenant
    plan_before = subscription.plan.slug if subscription.plan_id else None
    notes = [f"subscription {status}"]
    if status in _GOOD_STANDING:
        subscription.past_due_since = None
        notes.append(_plan_change(subscription, _plan_for_prices(obj), changed))
        notes.append(_tenant_in_good_standing(tenant))
    elif status in _OVERDUE:
        subscription.past_due_since = subscription.past_due_since or event_at
    elif status in _ENDED:
        subscription.past_due_since = None
        if tenant.status != Tenant.Status.PENDING_PAYMENT:
            notes.append(_plan_change(subscription, Plan.objects.filter(slug=FREE_PLAN_SLUG).first(), changed))
    _save(subscription, changed)
    if "plan" in changed:
        # From Stripe's webhook (the person acted on Stripe's pages): Strata's entry, labelled Stripe.
        audit_record(
            tenant=tenant,
            action=Action.PLAN_CHANGED,
            actor_label="Stripe",
            changes={"plan": [plan_before, subscription.plan.slug]},
        )
    return _outcome(*notes)


def _plan_change(subscription: Subscription, plan: Plan | None, changed: set[str]) -> str:
    if plan is None or plan.pk == subscription.plan_id:
        return ""
    subscription.plan = plan
    changed.add("plan")
    return f"plan changed to {plan.slug}"


def _invoice_subscription_id(invoice: dict[str, Any]) -> str:
    # API 2025-03-31 moved invoice.subscription to invoice.parent.subscription_details.subscription.
    details = ((invoice.get("parent") or {}).get("subscription_details")) or {}
    return details.get("subscription") or invoice.get("subscription") or ""


def invoice_paid(*, invoice: dict[str, Any], event_at: dt.datetime) -> str:
    subscription = _subscription_find(
        subscription_id=_invoice_subscription_id(invoice), customer_id=invoice.get("customer") or ""
    )
    if subscription is None:
        return "ignored: no tenant for this invoice"
    if _is_stale(subscription, event_at):
        return "ignored: older than the last event applied"
    changed = {"last_event_at", "past_due_since"}
    if subscription.status not in _ENDED:
        subscription.status = "active"
        changed.add("status")
    subscription.past_due_since = None
    subscription.last_event_at = event_at
    _save(subscription, changed)
    return _outcome("invoice paid", _tenant_in_good_standing(subscription.tenant))


def invoice_payment_failed(*, invoice: dict[str, Any], event_at: dt.datetime) -> str:
    subscription = _subscription_find(
        subscription_id=_invoice_subscription_id(invoice), customer_id=invoice.get("customer") or ""
    )
    if subscription is None:
        return "ignored: no tenant for this invoice"
    if _is_stale(subscription, event_at):
        return "ignored: older than the last event applied"
    if subscription.status in _ENDED:
        return "ignored: the subscription has already ended"
    subscription.status = "past_due"
    subscription.past_due_since = subscription.past_due_since or event_at
    subscription.last_event_at = event_at
    _save(subscription, {"status", "past_due_since", "last_event_at"})
    return f"past due since {subscription.past_due_since.isoformat()}"


# --- the periodic job ------------------------------------------------------------------------


def subscriptions_enforce_grace(*, now: dt.datetime | None = None) -> list[int]:
    """Suspend active tenants whose subscription has been past due longer than the grace period.

    Returns the ids of the tenants suspended. ``invoice.paid`` brings them back.
    """
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=settings.STRIPE_PAST_DUE_GRACE_DAYS)
    overdue = Subscription.objects.filter(
        past_due_since__lte=cutoff, tenant__status=Tenant.Status.ACTIVE
    ).select_related("tenant")
    suspended = []
    for subscription in overdue:
        with transaction.atomic():
            # Re-read under lock: an invoice.paid may have landed since the query above.
            fresh = _locked(Subscription.objects.filter(pk=subscription.pk, past_due_since__lte=cutoff))
            if fresh is None or fresh.tenant.status != Tenant.Status.ACTIVE:
                continue
            tenant_suspend(tenant=fresh.tenant, reason=NONPAYMENT_REASON)
            audit_record(tenant=fresh.tenant, action=Action.TENANT_SUSPENDED, changes={"reason": NONPAYMENT_REASON})
            suspended.append(fresh.tenant.pk)
    return suspended
