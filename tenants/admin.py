"""Two admins: the platform operators' on the public host and each tenant's own on its host."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.models import Subscription
from billing.selectors import tenants_with_period_usage
from core.models import User
from tenants.models import Domain, Membership, Tenant
from tenants.selectors import membership_get, tenants_with_member_counts
from tenants.services import tenant_reactivate, tenant_suspend

# --- Platform operators (public host, admin.site) ----------------------------------------


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


class SubscriptionInline(admin.StackedInline):
    """Stripe's view of the tenant's subscription, as the webhooks last reported it (read-only)."""

    model = Subscription
    extra = 0
    can_delete = False
    readonly_fields = (
        "status",
        "stripe_customer_id",
        "stripe_subscription_id",
        "current_period_end",
        "past_due_since",
        "last_event_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "subdomain",
        "status",
        "plan",
        "subscription_status",
        "tokens_this_period",
        "allowance",
        "member_count",
        "created",
    )
    list_filter = ("status", "plan", "subscription__status")
    search_fields = ("name", "subdomain", "domains__domain", "memberships__user__email")
    readonly_fields = ("schema_name", "created")
    inlines = (DomainInline, MembershipInline, SubscriptionInline)
    actions = ("suspend", "reactivate")
    list_select_related = ("plan", "subscription")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        # Members, this period's usage (running total) and the subscription: one query per page.
        return tenants_with_period_usage(tenants_with_member_counts()).select_related("plan", "subscription")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        if "plan" in form.base_fields:
            form.base_fields["plan"].help_text = (
                "Takes effect at once for quotas. A paying tenant's Stripe subscription is changed in "
                "Stripe (or by its owner in the billing portal); the webhook then updates this field."
            )
        return form

    @admin.display(ordering="member_count", description="members")
    def member_count(self, tenant: Tenant) -> int:
        return tenant.member_count  # type: ignore[attr-defined]

    @admin.display(ordering="tokens_this_period", description="tokens this period")
    def tokens_this_period(self, tenant: Tenant) -> str:
        return f"{tenant.tokens_this_period:,}"  # type: ignore[attr-defined]

    @admin.display(ordering="plan__included_tokens", description="allowance")
    def allowance(self, tenant: Tenant) -> str:
        return f"{tenant.plan.included_tokens:,}" if tenant.plan else "-"

    @admin.display(ordering="subscription__status", description="subscription")
    def subscription_status(self, tenant: Tenant) -> str:
        subscription = getattr(tenant, "subscription", None)
        return subscription.status if subscription is not None else "-"

    @admin.action(description="Suspend selected tenants")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant_suspend(tenant=tenant)
        self.message_user(request, f"Suspended {queryset.count()} tenant(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tenants")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            tenant_reactivate(tenant=tenant)
        self.message_user(request, f"Reactivated {queryset.count()} tenant(s).", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created")
    list_filter = ("role",)
    search_fields = ("user__email", "tenant__subdomain", "tenant__name")
    autocomplete_fields = ("user", "tenant")
    list_select_related = ("user", "tenant")


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    search_fields = ("domain", "tenant__name")
    list_select_related = ("tenant",)


# --- Tenant admin (each tenant host) -------------------------------------------------------


class TenantAdminLoginForm(AdminAuthenticationForm):
    """Owners and admins of the host's tenant may log in; is_staff is for platform operators."""

    def confirm_login_allowed(self, user: User) -> None:
        if not user.is_active or not _may_administer_tenant(user, self.request):
            raise forms.ValidationError(
                "Only owners and admins of this organisation can use its admin.", code="invalid_login"
            )


def _may_administer_tenant(user: Any, request: HttpRequest | None) -> bool:
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public or not user.is_active:
        return False
    if user.is_superuser:
        return True
    membership = membership_get(user=user, tenant=tenant)
    return membership is not None and membership.can_administer


class TenantAdminSite(admin.AdminSite):
    site_header = "Organisation admin"
    site_title = "Strata organisation admin"
    index_title = "Manage your organisation"
    login_form = TenantAdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        return _may_administer_tenant(request.user, request)


tenant_admin_site = TenantAdminSite(name="tenant_admin")


class TenantModelAdmin(admin.ModelAdmin):
    """Tenant owners and admins may do everything here; Django model permissions are for operators."""

    def _allowed(self, request: HttpRequest) -> bool:
        return tenant_admin_site.has_permission(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request)


class TenantMembershipForm(forms.ModelForm):
    email = forms.EmailField(help_text="The member's e-mail; they must already have a Strata account.")

    class Meta:
        model = Membership
        fields = ("role",)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].lower()
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise forms.ValidationError("No Strata account uses this e-mail.")
        self.instance.user = user
        return email


class TenantMembershipAdmin(TenantModelAdmin):
    list_display = ("user", "role", "created")
    list_filter = ("role",)
    search_fields = ("user__email",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        # Memberships live in public: without this filter every tenant's members would show.
        return Membership.objects.filter(tenant=request.tenant).select_related("user")  # type: ignore[attr-defined]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        if obj is None:
            kwargs["form"] = TenantMembershipForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("user",) if obj else ()

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        obj.tenant = request.tenant  # type: ignore[attr-defined]
        if not change and Membership.objects.filter(tenant=obj.tenant, user=obj.user).exists():
            form.add_error("email", "Already a member.")
            return
        super().save_model(request, obj, form, change)


tenant_admin_site.register(Membership, TenantMembershipAdmin)
