"""Tenant-schema data: collections, documents and their embedded chunks, prompts, conversations, agent actions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
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
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated", "-id"]
        indexes = [models.Index(fields=["user", "-updated"], name="conversation_user_idx")]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class AgentAction(models.Model):
    class AgentType(models.TextChoices):
        SUMMARISE = "summarise", "Summarise"
        CHAT = "chat", "Chat"

    Status = CallStatus

    timestamp = models.DateTimeField(auto_now_add=True, db_index=True)
    agent_type = models.CharField(max_length=20, choices=AgentType.choices)
    user = _user_reference(related_name="+")
    # The tenant API key that made the call, if a program did (keys live in public; revoked, never deleted).
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
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
    flagged_for_training = models.BooleanField(default=False)

    class Meta:
        ordering = ["-timestamp", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["ok", "error", "interrupted"]), name="agent_action_status_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.agent_type} {self.status} at {self.timestamp:%Y-%m-%d %H:%M}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    Status = CallStatus

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
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["conversation", "created"], name="message_conversation_idx")]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"
