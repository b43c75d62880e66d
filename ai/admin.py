"""The tenant admin's view of AI data (registered on the tenant admin site, not the operators')."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from ai.access import documents_readable, reader_of
from ai.models import AgentAction, Collection, CollectionMember, Document, PromptTemplate, ReviewJob
from ai.services import review
from ai.services.documents import document_delete, document_ingest_retry
from ai.services.review import agent_actions_matching, agent_actions_search
from ai.services.training_export import training_export_path, training_export_start
from core.platform.admin_lists import DateRangeFilter, LargeTableAdmin, boolean_icon, distinct_values
from tenants.admin import StorableTextModelForm, TenantModelAdmin, tenant_admin_site
from tenants.models import ApiKey


class CollectionMemberInline(admin.TabularInline):  # type: ignore[type-arg]
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


# --- Agent actions: a review screen over millions of rows (see core.platform.admin_lists) -------------


class _CriterionFilter(admin.SimpleListFilter):
    """A filter whose rows are those ``ai.services.review`` picks for its parameter: a bulk job
    started from a filtered list applies the very same criteria again in the worker."""

    choices_list: tuple[tuple[str, str], ...] = ()

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return self.choices_list

    def queryset(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> QuerySet[AgentAction]:
        return agent_actions_matching(criteria={str(self.parameter_name): self.value() or ""}, actions=queryset)


class StatusFilter(_CriterionFilter):
    title, parameter_name = "status", "status__exact"
    choices_list = tuple(AgentAction.Status.choices)


class AgentTypeFilter(_CriterionFilter):
    title, parameter_name = "agent type", "agent_type__exact"
    choices_list = tuple(AgentAction.AgentType.choices)


class ReviewedFilter(_CriterionFilter):
    title, parameter_name = "reviewed", "reviewed__exact"
    choices_list = (("1", "Yes"), ("0", "No"))


class FlaggedFilter(_CriterionFilter):
    title, parameter_name = "flagged for training", "flagged_for_training__exact"
    choices_list = (("1", "Yes"), ("0", "No"))


class FeedbackFilter(_CriterionFilter):
    title, parameter_name = "feedback", "feedback"
    choices_list = (
        (review.QUEUE, "Thumbs down, not reviewed"),
        (AgentAction.Feedback.DOWN, "Thumbs down"),
        (AgentAction.Feedback.UP, "Thumbs up"),
    )


class LatencyFilter(_CriterionFilter):
    title, parameter_name = "latency", "latency"
    choices_list = (("over_5s", "Over 5 s"), ("over_15s", "Over 15 s"), ("over_60s", "Over 60 s"))


class ModelFilter(_CriterionFilter):
    title, parameter_name = "model", "model"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        # One index probe per model (not SELECT DISTINCT over every action).
        return [(name, name) for name in distinct_values(AgentAction, "model", limit=50) if name]


class ApiKeyFilter(_CriterionFilter):
    title, parameter_name = "API key", "api_key"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        keys = ApiKey.objects.filter(tenant=request.tenant).order_by("name")  # type: ignore[attr-defined]
        return [(str(key.pk), f"{key.name} ({key.prefix})") for key in keys.only("id", "name", "prefix")]


class ActionDateFilter(DateRangeFilter):
    title, field_name = "date", "timestamp"


class _ActionChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        # The list shows none of the text: kilobytes per row that would be read and sent for nothing.
        return super().get_queryset(request, exclude_parameters).defer(*_LIST_DEFERRED)


_LIST_DEFERRED = ("input_prompt", "output_text", "error", "reviewer_note", "corrected_output", "feedback_comment")


class AgentActionForm(StorableTextModelForm):
    class Meta:
        model = AgentAction
        fields = ("reviewed", "flagged_for_training", "reviewer_note", "corrected_output")


@admin.register(AgentAction, site=tenant_admin_site)
class AgentActionAdmin(LargeTableAdmin, TenantModelAdmin):
    form = AgentActionForm
    list_display = (
        "timestamp",
        "agent_type",
        "user",
        "api_key",
        "status",
        "token_count",
        "latency_ms",
        "model",
        "feedback",
        "reviewed_icon",
        "flagged_icon",
    )
    # Sorting needs an index to stay fast at millions of rows: these two have one.
    sortable_by = ("timestamp", "latency_ms")
    list_filter = (
        FeedbackFilter,
        ReviewedFilter,
        FlaggedFilter,
        StatusFilter,
        AgentTypeFilter,
        ModelFilter,
        ApiKeyFilter,
        LatencyFilter,
        ActionDateFilter,
    )
    search_fields = ("input_prompt", "output_text")  # shown as the search box; searched by full text
    search_help_text = 'Words in the prompt or the output: refund policy, "exact phrase", -excluded, a or b.'
    list_select_related = ("user", "api_key")
    fieldsets = (
        (None, {"fields": ("timestamp", "agent_type", "status", "user", "api_key", "document", "conversation")}),
        (
            "Call",
            {
                "fields": (
                    "provider",
                    "model",
                    "latency_ms",
                    "input_tokens",
                    "output_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "error",
                )
            },
        ),
        ("Prompt and output", {"fields": ("input_prompt", "output_text")}),
        (
            "Feedback from the person who asked",
            {"fields": ("feedback", "feedback_comment", "feedback_by", "feedback_at")},
        ),
        (
            "Review",
            {
                "fields": (
                    "reviewed",
                    "reviewed_by",
                    "reviewed_at",
                    "flagged_for_training",
                    "flagged_by",
                    "flagged_at",
                    "reviewer_note",
                    "corrected_output",
                )
            },
        ),
    )
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
        "feedback",
        "feedback_comment",
        "feedback_by",
        "feedback_at",
        "reviewed_by",
        "reviewed_at",
        "flagged_by",
        "flagged_at",
    )
    actions = ("mark_reviewed", "mark_unreviewed", "flag_for_training", "unflag", "export_training")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _ActionChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AgentAction], search_term: str
    ) -> tuple[QuerySet[AgentAction], bool]:
        return agent_actions_search(queryset, search_term), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # actions are written by the AI services only

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # the record of what the AI did and for whom is kept: no tenant admin deletes it

    def save_model(self, request: HttpRequest, obj: AgentAction, form: Any, change: bool) -> None:
        review.agent_action_review_save(action=obj, actor=request.user, changed=form.changed_data)  # type: ignore[arg-type]
        super().save_model(request, obj, form, change)

    @admin.display(description="tokens")
    def token_count(self, action: AgentAction) -> int:
        return action.total_tokens

    @admin.display(description="reviewed")
    def reviewed_icon(self, action: AgentAction) -> str:
        return boolean_icon(action.reviewed)

    @admin.display(description="flagged for training")
    def flagged_icon(self, action: AgentAction) -> str:
        return boolean_icon(action.flagged_for_training)

    def _review(self, request: HttpRequest, queryset: QuerySet[AgentAction], kind: str, done: str) -> None:
        count, job = review.review_start(
            actions=queryset,
            kind=kind,
            actor=request.user,  # type: ignore[arg-type]
            criteria=review.review_criteria(request.GET),
            selected_all=request.POST.get("select_across") == "1",
        )
        if job is None:
            self.message_user(request, f"{done} {count:,} action(s).", messages.SUCCESS)
            return
        link = reverse("tenant_admin:ai_reviewjob_change", args=[job.pk])
        self.message_user(
            request,
            format_html(
                'About {} actions: running as a job, <a href="{}">follow its progress</a>.', f"{count:,}", link
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Mark reviewed")
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        self._review(request, queryset, ReviewJob.Kind.REVIEW, "Marked reviewed:")

    @admin.action(description="Mark not reviewed")
    def mark_unreviewed(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        self._review(request, queryset, ReviewJob.Kind.UNREVIEW, "Marked not reviewed:")

    @admin.action(description="Flag for training")
    def flag_for_training(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        self._review(request, queryset, ReviewJob.Kind.FLAG, "Flagged for training:")

    @admin.action(description="Unflag (not for training)")
    def unflag(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        self._review(request, queryset, ReviewJob.Kind.UNFLAG, "Unflagged:")

    @admin.action(description="Export the flagged ones for training (JSON Lines, as a job)")
    def export_training(self, request: HttpRequest, queryset: QuerySet[AgentAction]) -> None:
        criteria = review.review_criteria(request.GET)
        if request.POST.get("select_across") != "1":
            criteria["ids"] = ",".join(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
        job = training_export_start(actor=request.user, criteria=criteria)  # type: ignore[arg-type]
        link = reverse("tenant_admin:ai_reviewjob_change", args=[job.pk])
        self.message_user(
            request,
            format_html('The training export runs as a job: <a href="{}">download it from there</a> when done.', link),
            messages.SUCCESS,
        )


@admin.register(ReviewJob, site=tenant_admin_site)
class ReviewJobAdmin(TenantModelAdmin):
    """Bulk review steps and exports running as jobs, with their progress."""

    list_display = ("created", "kind", "state", "progress", "download", "created_by", "finished")
    list_filter = ("kind", "state")
    readonly_fields = (
        "kind",
        "state",
        "criteria",
        "estimated",
        "done",
        "progress",
        "download",
        "error",
        "created_by",
        "created",
        "finished",
    )
    fields = readonly_fields

    @admin.display(description="file")
    def download(self, job: ReviewJob) -> str:
        if job.kind != ReviewJob.Kind.EXPORT or not job.file_name:
            return "-"
        return format_html(
            '<a href="{}">Download (JSON Lines)</a>', reverse("tenant_admin:ai_reviewjob_download", args=[job.pk])
        )

    def get_urls(self) -> list[Any]:
        download = path(
            "<int:job_id>/download/", self.admin_site.admin_view(self.download_view), name="ai_reviewjob_download"
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, job_id: int) -> FileResponse:
        """An export job's file, for this tenant's admins (the job row lives in this tenant's schema)."""
        job = get_object_or_404(ReviewJob, pk=job_id, kind=ReviewJob.Kind.EXPORT, state=ReviewJob.State.DONE)
        file = training_export_path(job)
        if file is None or not file.is_file():
            raise Http404("This export's file is gone.")
        return FileResponse(
            file.open("rb"), as_attachment=True, filename=f"training-{job.pk}.jsonl", content_type="application/jsonl"
        )

    @admin.display(description="progress")
    def progress(self, job: ReviewJob) -> str:
        if job.state == ReviewJob.State.DONE:
            return f"{job.done:,} done"
        share = f" (~{min(99, job.done * 100 // job.estimated)} %)" if job.estimated else ""
        return f"{job.done:,} of about {job.estimated:,}{share}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
