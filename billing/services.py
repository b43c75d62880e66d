"""Billing use cases: Stripe checkout, webhooks, usage ledger, meter sync, quotas."""

from __future__ import annotations

from django.conf import settings


def billing_enabled() -> bool:
    return bool(getattr(settings, "STRIPE_SECRET_KEY", ""))
