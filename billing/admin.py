"""Operators edit plans in the public admin."""

from django.contrib import admin

from billing.models import Plan


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "monthly_price_cents", "included_tokens", "hard_limit", "is_public")
    prepopulated_fields = {"slug": ("name",)}
