"""Tenant-schema data: collections, documents and their embedded chunks, prompts, conversations, agent actions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models.functions import Left, Lower
from pgvector.django import HnswIndex, VectorField


def _user_reference(**kwargs: object) -> models.ForeignKey:
    # Users live in public; a database-level FK from every tenant schema would make deleting a
    # user lock and cascade across every schema, so the reference is kept without a constraint.
    # DO_NOTHING: Django's delete cascade runs in public, where these tables do not exist; deleting
    # a user goes through config.personal_data, which clears these references in every schema first.
    return models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, **kwargs
    )


class Collection(models.Model):
    """A shelf of documents and who may read it: the whole organisation, or named members (admins
    and owners read every collection). Each tenant has one default collection (tenant-wide), where
    documents go unless told otherwise. The rule itself is ``ai.access``."""

    class Visibility(models.TextChoices):
        TENANT = "tenant", "Everyone in the organisation"
        MEMBERS = "members", "Named members only"

    name = models.CharField(max_length=120)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.TENANT)
    is_default = models.BooleanField(default=False)
    created_by = _user_reference(related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_default", "name", "id"]
        constraints = [
            models.UniqueConstraint(Lower("name"), name="collection_unique_name"),
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="collection_one_default"
            ),
            models.CheckConstraint(
                condition=models.Q(visibility__in=["tenant", "members"]), name="collection_visibility_valid"
            ),
            # Documents land in the default collection when nobody says where: everyone must see it.
            models.CheckConstraint(
                condition=~models.Q(is_default=True, visibility="members"), name="collection_default_tenant_wide"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CollectionMember(models.Model):
    """Who may read a ``members`` collection; also the collections an API key is given (a key acts
    through a user row of its own, so its grant is a row here too: see ``ai.access``)."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="grants")
    # Users live in public (see _user_reference); a deleted user's rows grant nothing to anyone.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "user"], name="collection_member_unique")]
        indexes = [models.Index(fields=["user"], name="collection_member_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.collection_id}"


def collection_default_id() -> int:
    """The tenant's default collection: where a document created without one goes."""
    return Collection.objects.filter(is_default=True).values_list("id", flat=True).get()


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    collection = models.ForeignKey(
        Collection, on_delete=models.PROTECT, related_name="documents", default=collection_default_id
    )
    title = models.CharField(max_length=300)
    content = models.TextField()
    source_name = models.CharField(max_length=255, blank=True, help_text="File name of an upload.")
    content_type = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    # Bumped by every change of ``content``: ingestion's optimistic lock (a run stores its chunks
    # and marks the document ready only while the revision it read is still the document's).
    revision = models.PositiveIntegerField(default=0, db_default=0)
    # 1 for a new document; each replacement keeps the previous one as a DocumentVersion.
    version = models.PositiveIntegerField(default=1, db_default=1)
    created_by = _user_reference(related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["-created"], name="document_created_idx"),
            models.Index(fields=["collection", "-created"], name="document_collection_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "ready", "failed"]), name="document_status_valid"
            )
        ]

    def __str__(self) -> str:
        return self.title


class DocumentUpload(models.Model):
    """An uploaded file waiting for the ingestion job to read it (size-limited at upload; deleted
    once its text is extracted). Kept apart from Document so no document query loads the bytes."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="upload")
    data = models.BinaryField()
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, blank=True)
    # No title was given: the one the file carries (its metadata) replaces the name-derived one.
    title_from_file = models.BooleanField(default=False, db_default=False)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.filename


class DocumentVersion(models.Model):
    """An earlier version of a document, kept when it is replaced by a new one: its text and where it
    came from, who made it and when. Search reads only the current version."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=300)
    content = models.TextField()
    source_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    created_by = _user_reference(related_name="+")  # who made this version
    created = models.DateTimeField()  # when this version was made
    replaced_by = _user_reference(related_name="+")
    replaced = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document", "-number"]
        constraints = [models.UniqueConstraint(fields=["document", "number"], name="document_version_unique")]

    def __str__(self) -> str:
        return f"{self.title} v{self.number}"


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # The document's collection, copied so the permission-filtered vector search checks each
    # candidate on the chunk row the index already fetched, with no join to its document
    # (ai.selectors._search_sql). Kept true by the database: a foreign key (document, collection)
    # onto the document's (id, collection) with ON UPDATE CASCADE (migration 0015) moves the chunks
    # with their document, whoever moves it, and refuses a chunk filed under another collection.
    collection = models.ForeignKey(
        Collection, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    position = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS, null=True, blank=True)
    embedding_model = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [models.UniqueConstraint(fields=["document", "position"], name="chunk_unique_position")]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["document"], condition=models.Q(embedding__isnull=True), name="chunk_unembedded_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"


class PromptTemplate(models.Model):
    class Name(models.TextChoices):
        SUMMARISE = "summarise", "Summarise"
        SUMMARISE_REDUCE = "summarise_reduce", "Summarise (combine sections)"
        CHAT = "chat", "Chat"

    name = models.CharField(max_length=40, choices=Name.choices)
    version = models.PositiveIntegerField(default=1)
    system_prompt = models.TextField()
    active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="prompt_unique_version"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(active=True), name="prompt_one_active_per_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}{' (active)' if self.active else ''}"


class CallStatus(models.TextChoices):
    """How an AI call ended; shared by the call's AgentAction and the chat Message it produced."""

    OK = "ok", "OK"
    ERROR = "error", "Error"
    INTERRUPTED = "interrupted", "Interrupted"


class Conversation(models.Model):
    title = models.CharField(max_length=200, blank=True)
    user = _user_reference(related_name="+")
    # Pinned ones come first in the person's list. A database default too: a turn inserts its
    # conversation in plain SQL (ai.chat.services).
    pinned = models.BooleanField(default=False, db_default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-pinned", "-updated", "-id"]
        indexes = [models.Index(fields=["user", "-pinned", "-updated"], name="conversation_user_pinned_idx")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class AgentActionManager(models.Manager["AgentAction"]):
    def get_queryset(self) -> models.QuerySet[AgentAction]:
        # The search column is for the database's index only: never read it back with the rows.
        return super().get_queryset().defer("search")


class AgentAction(models.Model):
    """One AI call: what was asked, what came back, what it cost, and its review (who reviewed or
    flagged it and when, a note, a corrected output) and the asker's feedback. The admin lists
    millions of these: every filter it offers has an index below (see ai/admin.py)."""

    class AgentType(models.TextChoices):
        SUMMARISE = "summarise", "Summarise"
        CHAT = "chat", "Chat"

    class Feedback(models.TextChoices):
        UP = "up", "Thumbs up"
        DOWN = "down", "Thumbs down"

    Status = CallStatus

    timestamp = models.DateTimeField(auto_now_add=True, db_index=True)
    agent_type = models.CharField(max_length=20, choices=AgentType.choices)
    user = _user_reference(related_name="+")
    # The tenant API key that made the call, if a program did (keys live in public; revoked, never deleted).
    # Indexed with the timestamp below (the admin's "by key" filter), not alone.
    api_key = models.ForeignKey(
        "tenants.ApiKey",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OK)
    provider = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=100, blank=True)
    input_prompt = models.TextField(blank=True)
    output_text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveIntegerField(default=0)
    cache_read_input_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    document = models.ForeignKey(Document, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    conversation = models.ForeignKey(Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reviewed = models.BooleanField(default=False)
    reviewed_by = _user_reference(related_name="+")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    flagged_for_training = models.BooleanField(default=False)
    flagged_by = _user_reference(related_name="+")
    flagged_at = models.DateTimeField(null=True, blank=True)
    reviewer_note = models.TextField(blank=True, default="", db_default="")
    corrected_output = models.TextField(
        blank=True,
        default="",
        db_default="",
        help_text="What the answer should have been; the training export uses it.",
    )
    feedback = models.CharField(max_length=4, choices=Feedback.choices, blank=True, default="", db_default="")
    feedback_comment = models.TextField(blank=True, default="", db_default="")
    feedback_by = _user_reference(related_name="+")
    feedback_at = models.DateTimeField(null=True, blank=True)
    # Full-text search of the admin (a GIN index instead of LIKE '%...%' over kilobytes per row).
    # Left(): a tsvector holds at most 1 MB, and nobody searches past the first 100k characters.
    search = models.GeneratedField(
        expression=SearchVector(Left("input_prompt", 100_000), Left("output_text", 100_000), config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    objects = AgentActionManager()

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["ok", "error", "interrupted"]), name="agent_action_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(feedback__in=["", "up", "down"]), name="agent_action_feedback_valid"
            ),
        ]
        # Each admin filter, newest first, is an index range scan whatever the table's size; the
        # rare values (flagged, thumbs down and not reviewed, any feedback) are partial indexes.
        indexes = [
            GinIndex(fields=["search"], name="agent_action_search_idx"),
            models.Index(fields=["status", "-timestamp"], name="agent_action_status_idx"),
            models.Index(fields=["reviewed", "-timestamp"], name="agent_action_reviewed_idx"),
            models.Index(fields=["agent_type", "-timestamp"], name="agent_action_type_idx"),
            models.Index(fields=["model", "-timestamp"], name="agent_action_model_idx"),
            models.Index(fields=["api_key", "-timestamp"], name="agent_action_key_idx"),
            models.Index(fields=["latency_ms"], name="agent_action_latency_idx"),
            models.Index(
                fields=["-timestamp"], condition=models.Q(flagged_for_training=True), name="agent_action_flagged_idx"
            ),
            models.Index(
                fields=["feedback", "-timestamp"], condition=~models.Q(feedback=""), name="agent_action_feedback_idx"
            ),
            models.Index(
                fields=["-timestamp"],
                condition=models.Q(feedback="down", reviewed=False),
                name="agent_action_review_queue_idx",
            ),
            # Errors and interruptions nobody has reviewed yet (status and reviewed together): a
            # queue reviewers empty, and without it an emptied queue reads every reviewed error.
            models.Index(
                fields=["status", "-timestamp"],
                condition=models.Q(reviewed=False) & ~models.Q(status="ok"),
                name="agent_action_unreviewed_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_type} {self.status} at {self.timestamp:%Y-%m-%d %H:%M}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class ReviewJob(models.Model):
    """A bulk review action (or a training export) too large for a request, run as a job; the
    admin shows its progress. ``criteria`` are the admin's filters and search when it was started,
    and ``upto_id`` the newest action then: actions recorded afterwards are not swept in."""

    class Kind(models.TextChoices):
        REVIEW = "review", "Mark reviewed"
        UNREVIEW = "unreview", "Mark not reviewed"
        FLAG = "flag", "Flag for training"
        UNFLAG = "unflag", "Unflag"
        EXPORT = "export", "Training export"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    criteria = models.JSONField(default=dict, blank=True)
    upto_id = models.BigIntegerField()
    estimated = models.PositiveIntegerField(default=0, help_text="The planner's estimate when it started.")
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    file_name = models.CharField(max_length=100, blank=True, help_text="An export's file in EXPORTS_DIR.")
    created_by = _user_reference(related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    Status = CallStatus
    # An answer's ``error`` from the moment it is stored until its stream settles it: if its process
    # dies meanwhile, the message is left with its last checkpoint and this reason.
    UNFINISHED = "The answer did not finish: the server stopped while it was being written."

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OK)
    # Why an answer is not ``ok``: its failure, or (while it streams) what a crash would leave it as.
    # A database default too: the turn's placeholder is inserted in plain SQL (ai.chat.services).
    error = models.TextField(blank=True, default="", db_default="")
    sources = models.JSONField(default=list, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    agent_action = models.ForeignKey(AgentAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Replaced by a regenerated answer or an edited question (ai.chat.services): kept, with its AI
    # action and ledger row, but out of the conversation's history, its page and the API.
    superseded = models.BooleanField(default=False, db_default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["conversation", "created"], name="message_conversation_idx")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def unsettled(self) -> bool:
        """An answer its stream has not settled: still streaming, or left by a process that died."""
        return self.role == self.Role.ASSISTANT and self.agent_action_id is None and self.error == self.UNFINISHED
