"""Plans, subscriptions and the usage ledger: shared tables in the public schema."""

from __future__ import annotations

from django.db import models


class Plan(models.Model):
    name = models.CharField(max_length=60)
    slug = models.SlugField(max_length=40, unique=True)
    monthly_price_cents = models.PositiveIntegerField(default=0)
    included_tokens = models.PositiveBigIntegerField(help_text="Tokens included per billing period.")
    hard_limit = models.BooleanField(default=True, help_text="Refuse calls past the allowance instead of billing overage.")
    stripe_price_id = models.CharField(max_length=100, blank=True, help_text="Stripe price of the monthly base fee.")
    stripe_metered_price_id = models.CharField(max_length=100, blank=True, help_text="Stripe metered price for overage tokens.")
    allowed_models = models.JSONField(default=list, blank=True, help_text="Model names this plan may use; empty means any.")
    is_public = models.BooleanField(default=True, help_text="Offered at signup.")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "monthly_price_cents"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_paid(self) -> bool:
        return self.monthly_price_cents > 0
