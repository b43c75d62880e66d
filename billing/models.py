"""Plans, subscriptions and the usage ledger: shared tables in the public schema."""

from __future__ import annotations

import hashlib

from django.db import models

from tenants.models import TenantRowQuerySet


class Plan(models.Model):
    name = models.CharField(max_length=60)
    slug = models.SlugField(max_length=40, unique=True)
    monthly_price_cents = models.PositiveIntegerField(default=0)
    included_tokens = models.PositiveBigIntegerField(help_text="Tokens included per billing period.")
    hard_limit = models.BooleanField(
        default=True, help_text="Refuse calls past the allowance instead of billing overage."
    )
    stripe_price_id = models.CharField(max_length=100, blank=True, help_text="Stripe price of the monthly base fee.")
    stripe_metered_price_id = models.CharField(
        max_length=100, blank=True, help_text="Stripe metered price for overage tokens."
    )
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names this plan may use; empty means any."
    )
    concurrent_requests = models.PositiveSmallIntegerField(
        default=8, help_text="Answers and summaries one tenant may have in flight at once (its fair share)."
    )
    is_public = models.BooleanField(default=True, help_text="Offered at signup.")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "monthly_price_cents"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paid(self) -> bool:
        return self.monthly_price_cents > 0


class UsageEvent(models.Model):
    """One LLM call's token counts (never its text), written with the call's own record."""

    class Feature(models.TextChoices):
        CHAT = "chat", "Chat"
        SUMMARISE = "summarise", "Summarise"
        EMBED = "embed", "Embed"

    class MeterStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped (no Stripe customer or nothing to bill)"
        FAILED = "failed", "Failed (Stripe refused it; needs an operator)"

    # The ledger outlives its tenant: deleting a closed tenant (config.lifecycle) leaves these rows
    # and their tenant id (no constraint, no cascade); the audit log's workspace.deleted entry names it.
    tenant = models.ForeignKey(
        "tenants.Tenant", on_delete=models.DO_NOTHING, db_constraint=False, related_name="usage_events"
    )
    user = models.ForeignKey("core.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey(
        "tenants.ApiKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The tenant API key that caused this usage, if a program did.",
    )
    feature = models.CharField(max_length=20, choices=Feature.choices)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    cost_micros = models.PositiveBigIntegerField(default=0, help_text="Cost in millionths of a US dollar.")
    # Callers key by ids of their own tenant schema (``action:31``), so the key is unique per tenant.
    request_key = models.CharField(
        max_length=100, help_text="Unique per tenant; with the tenant id, the Stripe meter event identifier."
    )
    # How the call ended and how long it took (no text): the operators' AI health view reads these.
    status = models.CharField(max_length=12, default="ok", db_default="ok")
    latency_ms = models.PositiveIntegerField(default=0, db_default=0)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    meter_status = models.CharField(max_length=10, choices=MeterStatus.choices, default=MeterStatus.PENDING)
    meter_attempts = models.PositiveSmallIntegerField(default=0)
    meter_sent_at = models.DateTimeField(null=True, blank=True)
    meter_error = models.CharField(max_length=300, blank=True)
    meter_next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Backoff after a failed send.")

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "request_key"], name="usage_tenant_request_key_unique")
        ]
        indexes = [
            models.Index(fields=["tenant", "created"], name="usage_tenant_created_idx"),
            models.Index(fields=["id"], condition=models.Q(meter_status="pending"), name="usage_meter_pending_idx"),
            # The operators' ledger list: its "by model" filter (choices by a loose index scan,
            # not SELECT DISTINCT over the ledger) and its "failed" filter, newest first.
            models.Index(fields=["model", "-created"], name="usage_model_created_idx"),
            models.Index(fields=["-created"], condition=models.Q(meter_status="failed"), name="usage_meter_failed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.feature} {self.total_tokens} tokens ({self.request_key})"

    @property
    def meter_identifier(self) -> str:
        """Stripe de-duplicates meter events by this (account-wide, at most 100 characters)."""
        identifier = f"{self.tenant_id}-{self.request_key}"
        if len(identifier) <= 100:
            return identifier
        return f"{self.tenant_id}-sha256-{hashlib.sha256(self.request_key.encode()).hexdigest()}"


class TenantUsagePeriod(models.Model):
    """A running total per tenant and period: the quota check reads one row instead of the ledger."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="usage_periods")
    period_start = models.DateField()
    tokens_used = models.PositiveBigIntegerField(default=0)
    cost_micros = models.PositiveBigIntegerField(default=0)
    # Held by calls in flight (AllowanceReservation): a hard allowance admits a call only while
    # tokens_used + reserved_tokens leaves room for it.
    reserved_tokens = models.PositiveBigIntegerField(db_default=0)
    # When the owners were told a soft allowance was passed (once a period).
    overage_notified_at = models.DateTimeField(null=True, blank=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "period_start"], name="usage_period_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.period_start}: {self.tokens_used}"


class AllowanceReservation(models.Model):
    """What one upstream call in flight may spend, set aside before it starts (billing.services.reservations).

    ``tokens`` is held against a hard allowance (0 on plans without one). The call settles it with its
    reported usage and deletes the row; a row whose process died expires, and ``spent_*`` (the usage
    a stream checkpointed) is billed then.
    """

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    period_start = models.DateField()
    tokens = models.PositiveBigIntegerField(default=0)
    feature = models.CharField(max_length=20, choices=UsageEvent.Feature.choices)
    model = models.CharField(max_length=100)
    user = models.ForeignKey("core.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    api_key = models.ForeignKey("tenants.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    spent_input_tokens = models.PositiveIntegerField(default=0)
    spent_output_tokens = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    objects = TenantRowQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.feature}: {self.tokens}"


class Subscription(models.Model):
    """A tenant's plan, and its Stripe customer and subscription as the webhooks last told us.

    Every tenant has one from signup; a tenant on a free plan has no Stripe ids and no status.
    """

    tenant = models.OneToOneField("tenants.Tenant", on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    stripe_customer_id = models.CharField(max_length=100, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True, db_index=True)
    checkout_session_id = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=30, blank=True, default="", help_text="Stripe's subscription status (empty without Stripe)."
    )
    current_period_end = models.DateTimeField(null=True, blank=True)
    past_due_since = models.DateTimeField(null=True, blank=True)
    # The Stripe `created` time of the newest event applied: older events arriving late are ignored.
    last_event_at = models.DateTimeField(null=True, blank=True)
    updated = models.DateTimeField(auto_now=True)

    objects = TenantRowQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.status}"


class WebhookEvent(models.Model):
    """Every Stripe event received, by id: a replay finds its row and does nothing twice."""

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    created = models.DateTimeField(help_text="When Stripe created the event.")
    received = models.DateTimeField(auto_now_add=True)
    payload = models.JSONField()
    outcome = models.CharField(max_length=200, blank=True, help_text="What Strata did with it.")

    class Meta:
        ordering = ["-received"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
