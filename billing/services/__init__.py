"""What billing can do: record usage, check quotas, talk to Stripe, sync meters, follow webhooks."""

from billing.services.meter import SyncReport, usage_sync  # noqa: F401
from billing.services.quota import quota_check, quota_exceeded_error  # noqa: F401
from billing.services.stripe import (  # noqa: F401
    PORTAL_FLOWS,
    CheckoutStarted,
    PlanChange,
    billing_enabled,
    checkout_session_start,
    checkout_start,
    plan_change_start,
    portal_session_start,
)
from billing.services.subscriptions import subscription_start, subscriptions_enforce_grace  # noqa: F401
from billing.services.usage import period_start, usage_record, usage_summary  # noqa: F401
from billing.services.webhooks import WebhookOutcome, webhook_event_receive  # noqa: F401

__all__ = [
    "PORTAL_FLOWS",
    "CheckoutStarted",
    "PlanChange",
    "SyncReport",
    "WebhookOutcome",
    "billing_enabled",
    "checkout_session_start",
    "checkout_start",
    "period_start",
    "plan_change_start",
    "portal_session_start",
    "quota_check",
    "subscription_start",
    "subscriptions_enforce_grace",
    "usage_record",
    "usage_summary",
    "usage_sync",
    "webhook_event_receive",
]
