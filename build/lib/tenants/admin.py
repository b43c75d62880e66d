"""Each tenant's own admin on its host (owners and admins): members, and the AI app's models."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db.models import QuerySet
from django.http import HttpRequest

from core.models import User
from tenants.models import Membership
from tenants.selectors import membership_get

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
