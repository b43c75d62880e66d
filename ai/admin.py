"""The tenant admin's view of AI data (registered on the tenant admin site, not the operators')."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ai.models import AgentAction, Document, PromptTemplate
from ai.services.documents import document_ingest_retry
from tenants.admin import TenantModelAdmin, tenant_admin_site


@admin.register(Document, site=tenant_admin_site)
class DocumentAdmin(TenantModelAdmin):
    list_display = ("title", "status", "chunk_count", "created_by", "created")
    list_filter = ("status",)
    search_fields = ("title",)
    list_select_related = ("created_by",)
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
        "status",
        "token_count",
        "model",
        "reviewed",
        "flagged_for_training",
    )
    list_filter = ("agent_type", "status", "reviewed", "flagged_for_training")
    search_fields = ("input_prompt", "output_text")
    list_select_related = ("user",)
    date_hierarchy = "timestamp"
    readonly_fields = (
        "timestamp",
        "agent_type",
        "user",
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
