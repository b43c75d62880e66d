"""Each tenant's own admin on its host (owners and admins): members and invitations (through the
same services as the API and pages), and the AI app's models."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.validators import StorableTextFormMixin
from tenants.mfa.views import mfa_admin_login
from tenants.models import Invitation, Membership
from tenants.selectors import membership_get
from tenants.services.invitations import invitation_create, invitation_resend, invitation_revoke
from tenants.services.members import (
    actor_role,
    membership_remove,
    membership_remove_check,
    membership_role_change,
    membership_role_change_check,
)

# --- Tenant admin (each tenant host) -------------------------------------------------------


class TenantAdminLoginForm(StorableTextFormMixin, AdminAuthenticationForm):
    """Owners and admins of the host's tenant may log in; is_staff is for platform operators."""

    def confirm_login_allowed(self, user: User) -> None:
        if not user.is_active or not _may_administer_tenant(user, self.request):
            raise forms.ValidationError(
                "Only owners and admins of this organisation can use its admin.", code="invalid_login"
            )

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ApplicationError as refusal:  # a tenant enforcing SSO (tenants.backends): say so
            if refusal.code != "sso_required":
                raise  # server_busy and the like keep their own answer (503 + Retry-After)
            raise forms.ValidationError(refusal.message, code=refusal.code) from None


def _may_administer_tenant(user: Any, request: HttpRequest | None) -> bool:
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public or not user.is_active:
        return False
    if user.is_superuser:
        return True
    # Asked for every row of a changelist (permission checks per object): one query per request.
    cached = getattr(request, "_administers", None)
    if cached is not None and cached[0] == user.pk:
        return bool(cached[1])
    membership = membership_get(user=user, tenant=tenant)
    allowed = membership is not None and membership.can_administer
    request._administers = (user.pk, allowed)  # type: ignore[union-attr]
    return allowed


class TenantAdminSite(admin.AdminSite):
    site_header = "Organisation admin"
    site_title = "Strata organisation admin"
    index_title = "Manage your organisation"
    login_form = TenantAdminLoginForm

    def has_permission(self, request: HttpRequest) -> bool:
        return _may_administer_tenant(request.user, request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return mfa_admin_login(self, request, extra_context)


tenant_admin_site = TenantAdminSite(name="tenant_admin")


class StorableTextModelForm(StorableTextFormMixin, forms.ModelForm):  # type: ignore[type-arg]
    pass


class TenantModelAdmin(admin.ModelAdmin):
    """Tenant owners and admins may do everything here; Django model permissions are for operators."""

    form: type[forms.ModelForm] = StorableTextModelForm  # type: ignore[type-arg]

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
    """The role of one member, changed through ``membership_role_change`` (the same rules as the
    API and the members page). No tenant or user field: nothing of other tenants is listed."""

    class Meta:
        model = Membership
        fields = ("role",)

    def clean_role(self) -> str:
        role = self.cleaned_data["role"]
        try:
            membership_role_change_check(
                tenant=self.request.tenant,  # type: ignore[attr-defined]
                actor=self.request.user,  # type: ignore[attr-defined]
                membership=Membership.objects.get(pk=self.instance.pk),
                role=role,
            )
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        return role


class TenantMembershipAdmin(TenantModelAdmin):
    """Members of this tenant. People join through invitations (see Invitations)."""

    list_display = ("user", "role", "created")
    list_filter = ("role",)
    search_fields = ("user__email",)
    fields = ("user", "role")
    readonly_fields = ("user",)
    form = TenantMembershipForm

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        # Memberships live in public: without this filter every tenant's members would show.
        return Membership.objects.for_tenant(request.tenant).select_related("user")  # type: ignore[attr-defined]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # invite people instead: adding by e-mail would tell whether it has an account

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request  # type: ignore[attr-defined]
        role = form.base_fields.get("role")  # absent when the page is read-only
        if role is not None and actor_role(tenant=request.tenant, actor=request.user) != Membership.Role.OWNER:  # type: ignore[attr-defined]
            role.choices = [choice for choice in role.choices if choice[0] != Membership.Role.OWNER]  # type: ignore[attr-defined]
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None or not self._allowed(request):
            return self._allowed(request)
        # An admin sees an owner's membership read-only: only owners change owners.
        return not (
            obj.role == Membership.Role.OWNER
            and actor_role(tenant=request.tenant, actor=request.user) != Membership.Role.OWNER  # type: ignore[attr-defined]
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is None or not self._allowed(request):
            return self._allowed(request)
        try:
            membership_remove_check(tenant=request.tenant, actor=request.user, membership=obj)  # type: ignore[attr-defined, arg-type]
        except ApplicationError:
            return False
        return True

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, each through the service's checks
        return actions

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        membership_role_change(
            tenant=request.tenant,  # type: ignore[attr-defined]
            actor=request.user,  # type: ignore[arg-type]
            membership_id=obj.pk,
            role=form.cleaned_data["role"],
        )

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        membership_remove(tenant=request.tenant, actor=request.user, membership_id=obj.pk)  # type: ignore[attr-defined, arg-type]


class TenantInvitationForm(forms.ModelForm):  # type: ignore[type-arg]
    """Invite by e-mail: the answer is the same whether or not the address has a Strata account."""

    class Meta:
        model = Invitation
        fields = ("email", "role")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        # The service is the validation: it refuses (role, rate, already a member) or invites,
        # inside the admin's transaction, so the invitation and its e-mail job commit together.
        try:
            self.instance = invitation_create(
                tenant=self.request.tenant,  # type: ignore[attr-defined]
                actor=self.request.user,  # type: ignore[attr-defined]
                email=data["email"],
                role=data["role"],
            )
        except ApplicationError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc
        return data


class TenantInvitationAdmin(TenantModelAdmin):
    list_display = ("email", "role", "status", "expires", "invited_by", "created")
    list_filter = ("role",)
    search_fields = ("email",)
    fields = ("email", "role")
    form = TenantInvitationForm
    actions = ("resend", "revoke")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Invitation]:
        return Invitation.objects.for_tenant(request.tenant).select_related("invited_by")  # type: ignore[attr-defined]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> type:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request  # type: ignore[attr-defined]
        return form

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # resend or revoke instead

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoking keeps the record

    def save_model(self, request: HttpRequest, obj: Invitation, form: Any, change: bool) -> None:
        pass  # the form's validation created it through invitation_create

    @admin.action(description="Resend (a new link; the old one stops working)")
    def resend(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._each(request, queryset, invitation_resend, "Re-sent")

    @admin.action(description="Revoke")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        self._each(request, queryset, invitation_revoke, "Revoked")

    def _each(self, request: HttpRequest, queryset: QuerySet[Invitation], service: Any, done: str) -> None:
        count = 0
        for invitation in queryset:
            try:
                service(tenant=request.tenant, actor=request.user, invitation_id=invitation.pk)  # type: ignore[attr-defined]
                count += 1
            except ApplicationError as exc:
                self.message_user(request, f"{invitation.email}: {exc.message}", messages.ERROR)
        if count:
            self.message_user(request, f"{done} {count} invitation(s).", messages.SUCCESS)


tenant_admin_site.register(Membership, TenantMembershipAdmin)
tenant_admin_site.register(Invitation, TenantInvitationAdmin)
