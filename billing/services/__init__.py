"""What billing can do: record usage, check quotas, talk to Stripe."""

from billing.services.quota import quota_check  # noqa: F401
from billing.services.usage import period_start, usage_record, usage_summary  # noqa: F401
from billing.services.stripe import billing_enabled, checkout_session_start  # noqa: F401
