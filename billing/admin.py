"""The operators' billing admin (public host): plans are edited here; the ledger, subscriptions and
webhook events are shown read-only, since Stripe and the services own them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from billing.ai_health import ai_health
from billing.models import Plan, Subscription, TenantUsagePeriod, UsageEvent, WebhookEvent
from billing.selectors import plan_is_offered, plans_unpriced
from billing.services import billing_enabled
from core.platform.admin_lists import DateRangeFilter, LargeTableAdmin, distinct_values
from tenants.models import Tenant


def plan_warnings(request: HttpRequest) -> None:
    """Tell operators which paid plans customers cannot choose, and why (shown on the plan and tenant lists)."""
    if not billing_enabled():
        if not settings.DEBUG:
            # A warning, not Django admin's green "info": paid plans cannot be sold until it is set.
            messages.warning(
                request, "Stripe is not configured (STRIPE_SECRET_KEY): customers are offered free plans only."
            )
        return
    for plan in plans_unpriced():
        messages.warning(
            request,
            f"The {plan.name} plan costs {plan.monthly_price_cents / 100:,.2f} a month but has no Stripe price id: "
            "customers are not offered it. Set its Stripe price to offer it.",
        )


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "monthly_price_cents",
        "included_tokens",
        "hard_limit",
        "stripe_price_id",
        "stripe_metered_price_id",
        "is_public",
        "offered",
    )
    prepopulated_fields = {"slug": ("name",)}

    @admin.display(boolean=True, description="offered to customers")
    def offered(self, plan: Plan) -> bool:
        return plan_is_offered(plan)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if request.method == "GET":
            plan_warnings(request)
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "tenant",
        "status",
        "stripe_customer_id",
        "stripe_subscription_id",
        "current_period_end",
        "past_due_since",
        "last_event_at",
    )
    list_filter = ("status",)
    search_fields = ("tenant__subdomain", "tenant__name", "stripe_customer_id", "stripe_subscription_id")
    list_select_related = ("tenant",)


class UsageModelFilter(admin.SimpleListFilter):
    title, parameter_name = "model", "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        # One index probe per model (usage_model_created_idx), not SELECT DISTINCT over the ledger.
        return [(name, name) for name in distinct_values(UsageEvent, "model", limit=100)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[UsageEvent]) -> QuerySet[UsageEvent]:
        return queryset.filter(model=self.value()) if self.value() else queryset


class UsageDateFilter(DateRangeFilter):
    title, field_name = "date", "created"


@admin.register(UsageEvent)
class UsageEventAdmin(LargeTableAdmin, ReadOnlyAdmin):
    """The ledger grows without bound: estimated counts, keyset pages, filters on indexes
    (core.platform.admin_lists), and search by exact tenant subdomain or request key."""

    list_display = (
        "created",
        "tenant_label",
        "feature",
        "api_key",
        "model",
        "total_tokens",
        "cost_micros",
        "meter_status",
        "meter_attempts",
        "meter_error",
    )
    list_filter = ("meter_status", "feature", UsageModelFilter, UsageDateFilter)
    sortable_by = ("created",)
    search_fields = ("request_key",)  # shown as the search box; searched exactly (get_search_results)
    search_help_text = "A tenant's subdomain, or a request key (action:31), exactly."
    list_select_related = ("api_key",)
    actions = ("meter_retry",)
    change_list_template = "admin/billing/usageevent/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageEvent]:
        # Not select_related("tenant"): its inner join would hide the rows of deleted tenants, which the ledger keeps.
        subdomain = Tenant.objects.filter(pk=OuterRef("tenant_id")).values("subdomain")[:1]
        ledger: QuerySet[UsageEvent] = super().get_queryset(request)
        return ledger.annotate(tenant_subdomain=Subquery(subdomain))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[UsageEvent], search_term: str
    ) -> tuple[QuerySet[UsageEvent], bool]:
        # Substring search over the ledger reads all of it; these two are index lookups.
        term = search_term.strip()
        if not term:
            return queryset, False
        tenant_ids = list(Tenant.objects.filter(subdomain=term.lower()).values_list("id", flat=True))
        return queryset.filter(Q(tenant_id__in=tenant_ids) | Q(request_key=term)), False

    def get_urls(self) -> list[Any]:
        health = path(
            "ai-health/", self.admin_site.admin_view(self.ai_health_view), name="billing_usageevent_ai_health"
        )
        return [health, *super().get_urls()]

    def ai_health_view(self, request: HttpRequest) -> HttpResponse:
        """Calls, errors, latency and tokens per tenant, model and day, across tenants (ledger rows only)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        raw_days = request.GET.get("days", "")
        days = min(max(int(raw_days), 1), 90) if raw_days.isdigit() else 7
        tenant = request.GET.get("tenant", "")
        tenant_id = int(tenant) if tenant.isdigit() else None
        model = request.GET.get("model", "").strip()[:100]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "AI health",
            "days": days,
            "tenant_id": tenant_id,
            "model": model,
            "tenants": list(Tenant.objects.order_by("subdomain").values_list("id", "subdomain")),
            "rows": ai_health(days=days, tenant_id=tenant_id, model=model),
        }
        return TemplateResponse(request, "admin/billing/usageevent/ai_health.html", context)

    @admin.display(description="tenant", ordering="tenant_subdomain")
    def tenant_label(self, event: UsageEvent) -> str:
        subdomain = event.tenant_subdomain  # type: ignore[attr-defined]
        return subdomain or f"deleted tenant #{event.tenant_id}"

    @admin.action(description="Send to Stripe again (failed events)")
    def meter_retry(self, request: HttpRequest, queryset: QuerySet[UsageEvent]) -> None:
        # The identifier is unchanged, so an event Stripe already has is recognised, never billed twice.
        count = queryset.filter(meter_status=UsageEvent.MeterStatus.FAILED).update(
            meter_status=UsageEvent.MeterStatus.PENDING, meter_next_attempt_at=None
        )
        self.message_user(request, f"{count} event(s) queued for the next meter sync.", messages.SUCCESS)


@admin.register(TenantUsagePeriod)
class TenantUsagePeriodAdmin(ReadOnlyAdmin):
    list_display = ("tenant", "period_start", "tokens_used", "cost_micros")
    list_filter = ("period_start",)
    search_fields = ("tenant__subdomain", "tenant__name")
    list_select_related = ("tenant",)


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "type", "created", "received", "outcome")
    list_filter = ("type",)
    search_fields = ("event_id",)
