"""The tenant admin's view of AI data (registered on the tenant admin site, not the operators')."""

from django.contrib import admin

from ai.models import Document
from tenants.admin import TenantModelAdmin, tenant_admin_site


@admin.register(Document, site=tenant_admin_site)
class DocumentAdmin(TenantModelAdmin):
    list_display = ("title", "created_by", "created")
    search_fields = ("title",)
    list_select_related = ("created_by",)
    readonly_fields = ("created_by", "created", "updated")
