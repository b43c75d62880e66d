"""Stripe and pricing settings: billing is on only when STRIPE_SECRET_KEY is set."""

from .env import PRODUCTION, env

STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="") or None
STRIPE_METER_EVENT_NAME = env.str("STRIPE_METER_EVENT_NAME", default="strata_tokens")
# Stripe's own pages (Checkout, the customer portal): billing forms redirect there, so the
# Content-Security-Policy's form-action allows them (config/settings/security.py).
STRIPE_PAGE_ORIGINS = env.list(
    "STRIPE_PAGE_ORIGINS", default=["https://checkout.stripe.com", "https://billing.stripe.com"]
)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
STRIPE_PAST_DUE_GRACE_DAYS = env.int("STRIPE_PAST_DUE_GRACE_DAYS", default=7)
if PRODUCTION and STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET:
    raise RuntimeError("STRIPE_WEBHOOK_SECRET is required when Stripe is on in production.")

# US dollars per million tokens (= micro-dollars per token), by model.
MODEL_PRICES = {
    "claude-sonnet-4-6": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.30},
    "claude-opus-4-6": {"input": 5.0, "output": 25.0, "cache_write": 6.25, "cache_read": 0.50},
    "claude-haiku-4-5": {"input": 1.0, "output": 5.0, "cache_write": 1.25, "cache_read": 0.10},
    "offline": {},
    "default": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.30},
}
STRIPE_TIMEOUT_SECONDS = env.int("STRIPE_TIMEOUT_SECONDS", default=20)
# Billing's periodic jobs (cron; a sixth field is seconds): usage to Stripe, and the grace period.
BILLING_METER_SYNC_CRON = env.str("BILLING_METER_SYNC_CRON", default="* * * * *")
BILLING_GRACE_CRON = env.str("BILLING_GRACE_CRON", default="*/15 * * * *")
BILLING_SYNC_BATCH = env.int("BILLING_SYNC_BATCH", default=2000)
# A signup that never pays is released (tenant, schema and subdomain) this many days after it started.
BILLING_PENDING_RELEASE_DAYS = env.int("BILLING_PENDING_RELEASE_DAYS", default=7)
BILLING_PENDING_RELEASE_CRON = env.str("BILLING_PENDING_RELEASE_CRON", default="37 * * * *")
