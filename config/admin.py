"""The platform operators' admin on the public host: accounts, and tenants with their billing
(it composes tenants and billing, so it sits in the project wiring above both)."""

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django_tenants.utils import get_public_schema_name

from billing.admin import plan_warnings
from billing.models import Subscription
from billing.selectors import tenants_with_period_usage, usage_report
from billing.views import usage_context, usage_csv
from config.lifecycle import workspace_close, workspace_restore
from config.operator_audit import OperatorAuditMixin
from config.personal_data import account_delete, account_delete_check
from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.audit.services import Action, Operator, audit_record
from tenants.models import Domain, Membership, Tenant
from tenants.selectors import tenants_with_member_counts
from tenants.services import tenant_reactivate, tenant_suspend


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("email",)
    list_display = ("email", "full_name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    # Deleting a person goes through config.personal_data (every tenant schema first, then public),
    # and is refused, with a message, for the last owner of a workspace.
    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        user = self.get_object(request, object_id)
        if user is not None:
            try:
                account_delete_check(user=user)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:core_user_change", args=[user.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        account_delete(user=obj, operator=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            try:
                account_delete(user=user, operator=request.user)  # type: ignore[arg-type]
            except ApplicationError as exc:
                self.message_user(request, f"{user.email} was not deleted. {exc.message}", messages.ERROR)


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


class SubscriptionInline(admin.StackedInline):
    """The tenant's plan (editable) and Stripe's view of its subscription, as the webhooks last
    reported it (read-only)."""

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
    fields = ("plan", *readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.base_fields["plan"].help_text = (
            "Takes effect at once for quotas. A paying tenant's Stripe subscription is changed in "
            "Stripe (or by its owner in the billing portal); the webhook then updates this field."
        )
        return formset


class SubscriptionStatusFilter(admin.AllValuesFieldListFilter):
    """Stripe's status of the subscription: titled apart from the tenant's own status, and shown
    only once some subscription has one (free plans have none: the list was an empty "By status")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.title = "subscription status"
        self.lookup_choices = [value for value in self.lookup_choices if value]  # type: ignore[assignment]

    def has_output(self) -> bool:
        return bool(self.lookup_choices)


@admin.register(Tenant)
class TenantAdmin(OperatorAuditMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "subdomain",
        "status",
        "plan",
        "subscription_status",
        "tokens_this_period",
        "usage_link",
        "member_count",
        "created_on",
    )
    list_filter = ("status", "subscription__plan", ("subscription__status", SubscriptionStatusFilter))
    search_fields = ("name", "subdomain", "domains__domain", "memberships__user__email")
    readonly_fields = ("schema_name", "created", "closed_at", "delete_after")
    inlines = (DomainInline, MembershipInline, SubscriptionInline)
    actions = ("suspend", "reactivate", "close", "restore")
    list_select_related = ("subscription__plan",)

    class Media:
        css = {"all": ("core/admin-lists.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        # Members, this period's usage (running total), the subscription and plan: one query per page.
        return tenants_with_period_usage(tenants_with_member_counts()).select_related("subscription__plan")

    @admin.display(ordering="subscription__plan__name", description="plan")
    def plan(self, tenant: Tenant) -> str:
        subscription = getattr(tenant, "subscription", None)
        return subscription.plan.name if subscription is not None else "-"

    @admin.display(ordering="member_count", description="members")
    def member_count(self, tenant: Tenant) -> int:
        return tenant.member_count  # type: ignore[attr-defined]

    # Few, short columns: the list fits a 1280 px window beside its filters (issue 25).
    @admin.display(ordering="tokens_this_period", description="tokens / allowance")
    def tokens_this_period(self, tenant: Tenant) -> str:
        subscription = getattr(tenant, "subscription", None)
        allowance = f"{subscription.plan.included_tokens:,}" if subscription is not None else "-"
        return f"{tenant.tokens_this_period:,} / {allowance}"  # type: ignore[attr-defined]

    @admin.display(ordering="created", description="created")
    def created_on(self, tenant: Tenant) -> str:
        return f"{tenant.created:%d %b %Y}"

    @admin.display(ordering="subscription__status", description="subscription")
    def subscription_status(self, tenant: Tenant) -> str:
        subscription = getattr(tenant, "subscription", None)
        return (subscription.status or "-") if subscription is not None else "-"

    @admin.display(description="usage")
    def usage_link(self, tenant: Tenant) -> str:
        return format_html('<a href="{}">Chart</a>', reverse("admin:tenants_tenant_usage", args=[tenant.pk]))

    def get_urls(self) -> list[Any]:
        usage = [
            path("<int:tenant_id>/usage/", self.admin_site.admin_view(self.usage_view), name="tenants_tenant_usage"),
            path(
                "<int:tenant_id>/usage.csv",
                self.admin_site.admin_view(self.usage_csv_view),
                name="tenants_tenant_usage_csv",
            ),
        ]
        return usage + super().get_urls()

    def usage_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        """The tenant's usage page as its people see it (per day, feature and person), for operators."""
        tenant = get_object_or_404(Tenant, pk=tenant_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "tenant": tenant,
            "title": f"Usage of {tenant.name}",
            **usage_context(usage_report(tenant_id=tenant.pk), people=True),
        }
        return TemplateResponse(request, "admin/tenants/tenant/usage.html", context)

    def usage_csv_view(self, request: HttpRequest, tenant_id: int) -> HttpResponse:
        tenant = get_object_or_404(Tenant, pk=tenant_id)
        report = usage_report(tenant_id=tenant.pk)
        return usage_csv(
            report, filename=f"strata-usage-{tenant.subdomain}-{report.period_start:%Y-%m}.csv", people=True
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        if request.method == "GET":
            plan_warnings(request)
        # The widest list of the admin takes the whole window: no app sidebar beside it.
        return super().changelist_view(request, {"is_nav_sidebar_enabled": False, **(extra_context or {})})

    @admin.action(description="Suspend selected tenants")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        tenants = list(queryset.exclude(status=Tenant.Status.CLOSED))
        for tenant in tenants:
            tenant_suspend(tenant=tenant)
            audit_record(tenant=tenant, action=Action.TENANT_SUSPENDED, actor=Operator(request.user), request=request)  # type: ignore[arg-type]
        self.message_user(request, f"Suspended {len(tenants)} tenant(s).", messages.SUCCESS)

    @admin.action(description="Reactivate selected tenants")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        tenants = list(queryset.exclude(status=Tenant.Status.CLOSED))
        for tenant in tenants:
            tenant_reactivate(tenant=tenant)
            audit_record(tenant=tenant, action=Action.TENANT_REACTIVATED, actor=Operator(request.user), request=request)  # type: ignore[arg-type]
        self.message_user(request, f"Reactivated {len(tenants)} tenant(s).", messages.SUCCESS)

    # --- closing: the one way a tenant goes (config.lifecycle); "delete" closes it too -----------

    @admin.action(description="Close selected tenants (restorable during the grace period)")
    def close(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self.delete_queryset(request, queryset)

    @admin.action(description="Restore selected closed tenants")
    def restore(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset.filter(status=Tenant.Status.CLOSED):
            try:
                workspace_restore(tenant=tenant, actor=Operator(request.user), request=request)  # type: ignore[arg-type]
            except ApplicationError as exc:
                self.message_user(request, f"{tenant.subdomain}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"Restored {tenant.subdomain}.", messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "Close selected tenants" says what really happens
        return actions

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_readonly_fields(request, obj)
        # Closed is entered and left through the actions above (deadline, jobs, billing, audit), not by editing.
        return (*fields, "status") if obj is not None and obj.status == Tenant.Status.CLOSED else fields

    def formfield_for_choice_field(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "status":
            kwargs["choices"] = [choice for choice in Tenant.Status.choices if choice[0] != Tenant.Status.CLOSED]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and (obj.is_public or obj.status == Tenant.Status.CLOSED):
            return False
        return super().has_delete_permission(request, obj)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        # Nothing is deleted now: the tenant is closed; its schema and rows go after the grace period
        # (the ledger and the audit log never), so no per-model delete permission is needed.
        days = settings.TENANT_DELETE_GRACE_DAYS
        summary = [
            f"{tenant}: closed now (access stops, its jobs stop, its subscription is cancelled); restorable "
            f"for {days} days, then its schema is dropped and its subdomain freed. Usage and audit records are kept."
            for tenant in objs
        ]
        return summary, {"tenants": len(summary)}, set(), []

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        self.delete_queryset(request, Tenant.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset.exclude(status=Tenant.Status.CLOSED).exclude(schema_name=get_public_schema_name()):
            closed = workspace_close(tenant=tenant, actor=Operator(request.user), request=request)  # type: ignore[arg-type]
            self.message_user(
                request,
                f"Closed {closed.subdomain}: it can be restored until {closed.delete_after:%Y-%m-%d %H:%M} UTC.",
                messages.SUCCESS,
            )

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:tenants_tenant_changelist"))


@admin.register(Membership)
class MembershipAdmin(OperatorAuditMixin, admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created")
    list_filter = ("role",)
    search_fields = ("user__email", "tenant__subdomain", "tenant__name")
    autocomplete_fields = ("user", "tenant")
    list_select_related = ("user", "tenant")


@admin.register(Domain)
class DomainAdmin(OperatorAuditMixin, admin.ModelAdmin):
    list_display = ("domain", "tenant", "is_primary")
    search_fields = ("domain", "tenant__name")
    list_select_related = ("tenant",)
