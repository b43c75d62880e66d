"""The operators' admin: every tenant's audit entries, read only (config.operator_audit records
what operators change there)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tenants.audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """All tenants' entries, newest first. Nobody adds, changes or deletes one here (the database
    would refuse the last two anyway)."""

    list_display = ("at", "tenant_subdomain", "actor_type", "actor_label", "action", "target", "ip")
    list_filter = ("action", "actor_type")
    search_fields = ("tenant_subdomain", "actor_label", "target", "=tenant_id")
    date_hierarchy = "at"
    show_full_result_count = False  # no COUNT(*) over the whole log on every page
    readonly_fields = [field.name for field in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
