"""What platform operators change on a tenant in the operators' admin, recorded in that tenant's
audit log (here, in the wiring: it knows tenants' and billing's rows)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.http import HttpRequest

from billing.models import Subscription
from tenants.audit.models import Action
from tenants.audit.services import Operator, audit_record
from tenants.models import Domain, Membership, Tenant


def _plain(field: forms.Field | None, value: Any) -> Any:
    """A form value as the log keeps it: a related row by its name, not its id."""
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(field, forms.ModelChoiceField) and field.queryset is not None and value not in (None, ""):
        found = field.queryset.filter(pk=value).first()
        return str(found) if found is not None else value
    return value


def form_changes(form: forms.BaseForm) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for each field the form changed."""
    return {
        name: [
            _plain(form.fields.get(name), form.initial.get(name)),
            _plain(form.fields.get(name), form.cleaned_data.get(name)),
        ]
        for name in form.changed_data
    }


def _tenant_of(obj: Any) -> Tenant | None:
    if isinstance(obj, Tenant):
        return None if obj.pk is None or obj.is_public else obj
    tenant = getattr(obj, "tenant", None)
    return tenant if isinstance(tenant, Tenant) and not tenant.is_public else None


def _action(obj: Any, *, added: bool, deleted: bool, changes: dict[str, Any]) -> str:
    if isinstance(obj, Membership):
        if deleted:
            return Action.MEMBER_REMOVED
        return Action.MEMBER_ADDED if added else Action.MEMBER_ROLE_CHANGED
    if isinstance(obj, Subscription) and "plan" in changes:
        return Action.PLAN_CHANGED
    if isinstance(obj, Subscription):
        return Action.SUBSCRIPTION_CHANGED
    if isinstance(obj, Domain):
        return Action.DOMAIN_CHANGED
    return Action.TENANT_CHANGED


def _target(obj: Any) -> str:
    if isinstance(obj, Membership):
        return obj.user.email if obj.user_id else ""
    if isinstance(obj, Tenant):
        return obj.subdomain
    return f"{obj._meta.verbose_name} {obj}"


def operator_change_record(
    request: HttpRequest, obj: Any, *, added: bool = False, deleted: bool = False, changes: dict[str, Any] | None = None
) -> None:
    """One entry in ``obj``'s tenant's log, by the operator making the request."""
    tenant = _tenant_of(obj)
    if tenant is None:
        return
    audit_record(
        tenant=tenant,
        action=_action(obj, added=added, deleted=deleted, changes=changes or {}),
        actor=Operator(request.user),  # type: ignore[arg-type]
        request=request,
        target=_target(obj),
        changes=changes or None,
    )


class OperatorAuditMixin:
    """For the operators' ModelAdmins of tenant rows (the tenant itself, its domains, members and
    subscription, inline or not): each save or delete is an entry in the tenant's log, by the
    operator, with before and after of the fields changed."""

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:  # type: ignore[type-arg]
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        if form.changed_data or not change:
            operator_change_record(request, obj, added=not change, changes=form_changes(form))

    # Entries are written after the rows are saved or deleted: the log's per-tenant lock is always the
    # last one a transaction takes (tenants.audit.services), so two writers never wait on each other.

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        deleted = [inline.instance for inline in formset.deleted_forms if inline.instance.pk is not None]
        edited = [
            (inline, inline.instance.pk is None)
            for inline in formset.forms
            if inline not in formset.deleted_forms and inline.has_changed()
        ]
        super().save_formset(request, form, formset, change)  # type: ignore[misc]
        for obj in deleted:
            operator_change_record(request, obj, deleted=True)
        for inline, added in edited:
            operator_change_record(request, inline.instance, added=added, changes=form_changes(inline))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)  # type: ignore[misc]
        operator_change_record(request, obj, deleted=True)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        doomed = list(queryset)
        super().delete_queryset(request, queryset)  # type: ignore[misc]
        for obj in doomed:
            operator_change_record(request, obj, deleted=True)
