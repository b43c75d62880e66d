"""The tenant admin's view of AI data (registered on the tenant admin site, not the operators')."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ai.access import documents_readable, reader_of
from ai.models import AgentAction, Collection, CollectionMember, Document, PromptTemplate
from ai.services.documents import document_delete, document_ingest_retry
from tenants.admin import TenantModelAdmin, tenant_admin_site


class CollectionMemberInline(admin.TabularInline):
    model = CollectionMember
    extra = 0
    fields = ("user", "created")
    readonly_fields = ("created",)
    raw_id_fields = ("user",)


@admin.register(Collection, site=tenant_admin_site)
class CollectionAdmin(TenantModelAdmin):
    list_display = ("name", "visibility", "is_default", "created")
    list_filter = ("visibility",)
    search_fields = ("name",)
    readonly_fields = ("is_default", "created_by", "created", "updated")
    inlines = (CollectionMemberInline,)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting one moves its documents somewhere first: the API and the settings page ask where.
        return False


@admin.register(Document, site=tenant_admin_site)
class DocumentAdmin(TenantModelAdmin):
    """Owners and admins (the only people here) may change any document; deletions go through the
    documents service, so each is checked and audited as on the API and the pages."""

    list_display = ("title", "collection", "status", "chunk_count", "created_by", "created")
    list_filter = ("status", "collection")
    search_fields = ("title",)
    list_select_related = ("created_by", "collection")
    readonly_fields = (
        "status",
        "error",
        "chunk_count",
        "source_name",
        "content_type",
        "created_by",
        "created",
        "updated",
    )
    actions = ("retry_ingestion",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return documents_readable(reader_of(tenant=request.tenant, user=request.user))  # type: ignore[attr-defined]

    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        document_delete(
            reader=reader_of(tenant=request.tenant, user=request.user),  # type: ignore[attr-defined]
            tenant=request.tenant,  # type: ignore[attr-defined]
            document=obj,
            request=request,
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        for document in queryset:
            self.delete_model(request, document)

    @admin.action(description="Index again (failed or stuck documents)")
    def retry_ingestion(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        retried = 0
        for document in queryset.exclude(status=Document.Status.READY):
            document_ingest_retry(document=document)
            retried += 1
        self.message_user(request, f"Queued {retried} document(s) for indexing.", messages.SUCCESS)


@admin.register(PromptTemplate, site=tenant_admin_site)
class PromptTemplateAdmin(TenantModelAdmin):
    list_display = ("name", "version", "active", "created")
    list_filter = ("name", "active")


@admin.register(AgentAction, site=tenant_admin_site)
class AgentActionAdmin(TenantModelAdmin):
    list_display = (
        "timestamp",
        "agent_type",
        "user",
        "api_key",
        "status",
        "token_count",
        "model",
        "reviewed",
        "flagged_for_training",
    )
    list_filter = ("agent_type", "status", "reviewed", "flagged_for_training")
    search_fields = ("input_prompt", "output_text")
    list_select_related = ("user", "api_key")
    date_hierarchy = "timestamp"
    readonly_fields = (
        "timestamp",
        "agent_type",
        "user",
        "api_key",
        "status",
        "provider",
        "model",
        "input_prompt",
        "output_text",
        "error",
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "latency_ms",
        "document",
        "conversation",
    )
    actions = ("mark_reviewed", "flag_for_training")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # actions are written by the AI services only

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the record of what the AI did and for whom is kept: no tenant admin deletes it

    @admin.display(description="tokens")
    def token_count(self, action: AgentAction) -> int:
        return action.total_tokens

    @admin.action(description="Mark reviewed")
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        count = queryset.update(reviewed=True)
        self.message_user(request, f"Marked {count} action(s) reviewed.", messages.SUCCESS)

    @admin.action(description="Flag for training")
    def flag_for_training(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        count = queryset.update(flagged_for_training=True)
        self.message_user(request, f"Flagged {count} action(s) for training.", messages.SUCCESS)
