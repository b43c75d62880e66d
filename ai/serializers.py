"""API shapes of the AI app: input serializers validate, output serializers shape."""

from typing import Any

from django.conf import settings
from rest_framework import serializers

from ai.chat.citations import citations_link
from ai.markdown import markdown_html
from ai.models import Collection, Conversation, Document, DocumentVersion, Message
from core.platform.fields import StorableCharField, StrictBooleanField, StrictFloatField, StrictIntegerField


class CollectionSerializer(serializers.ModelSerializer[Collection]):
    """A collection as its readers see it; ``member_ids`` and ``api_key_ids`` come from the view's
    context (``grants``: collection id -> (people, keys)), read in one query for the whole page."""

    member_ids = serializers.SerializerMethodField()
    api_key_ids = serializers.SerializerMethodField()
    document_count = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Collection
        fields = ("id", "name", "visibility", "is_default", "member_ids", "api_key_ids", "document_count", "created")
        read_only_fields = fields

    def _grants(self, collection: Collection) -> tuple[list[int], list[int]]:
        grants: dict[int, tuple[list[int], list[int]]] = self.context.get("grants", {})
        return grants.get(collection.pk, ([], []))

    def get_member_ids(self, collection: Collection) -> list[int]:
        return self._grants(collection)[0]

    def get_api_key_ids(self, collection: Collection) -> list[int]:
        return self._grants(collection)[1]


class CollectionInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = StorableCharField(max_length=120)
    visibility = serializers.ChoiceField(choices=Collection.Visibility.choices, default=Collection.Visibility.TENANT)
    member_ids = serializers.ListField(child=StrictIntegerField(min_value=1), max_length=1000, required=False)
    api_key_ids = serializers.ListField(child=StrictIntegerField(min_value=1), max_length=1000, required=False)


class CollectionPersonSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    email = serializers.EmailField()
    name = serializers.CharField(source="get_full_name", default="")


class CollectionKeySerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()


class CollectionMembersSerializer(serializers.Serializer):  # type: ignore[type-arg]
    people = CollectionPersonSerializer(many=True)
    keys = CollectionKeySerializer(many=True)


class DocumentListSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)
    collection_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Document
        fields: tuple[str, ...] = (
            "id",
            "title",
            "collection_id",
            "source_name",
            "status",
            "error",
            "chunk_count",
            "version",
            "created_by",
            "created",
            "updated",
        )
        read_only_fields = fields


class DocumentVersionSerializer(serializers.ModelSerializer[DocumentVersion]):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)
    replaced_by = serializers.EmailField(source="replaced_by.email", read_only=True, default=None)

    class Meta:
        model = DocumentVersion
        fields = ("number", "title", "source_name", "content_type", "created_by", "created", "replaced_by", "replaced")
        read_only_fields = fields


class DocumentReplaceSerializer(serializers.Serializer):  # type: ignore[type-arg]
    title = StorableCharField(max_length=300, required=False, allow_blank=True, default="")
    content = StorableCharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    file = serializers.FileField(required=False, allow_empty_file=True, use_url=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("file") is None and not attrs.get("content", "").strip():
            raise serializers.ValidationError({"content": ["Send the new version's text, or upload a file."]})
        return attrs


class DocumentSerializer(DocumentListSerializer):
    class Meta(DocumentListSerializer.Meta):
        fields = (*DocumentListSerializer.Meta.fields, "content", "content_type")
        read_only_fields = fields


class DocumentCreateSerializer(serializers.Serializer):
    title = StorableCharField(max_length=300, required=False, allow_blank=True, default="")
    content = StorableCharField(required=False, allow_blank=True, trim_whitespace=False, default="")
    file = serializers.FileField(required=False, allow_empty_file=True, use_url=False)
    collection_id = StrictIntegerField(required=False, min_value=1, help_text="Default: the default collection.")

    def validate(self, attrs: dict) -> dict:
        if attrs.get("file") is None:
            errors = {}
            if not attrs.get("title", "").strip():
                errors["title"] = ["This field is required."]
            if not attrs.get("content", "").strip():
                errors["content"] = ["This field is required (or upload a file)."]
            if errors:
                raise serializers.ValidationError(errors)
        return attrs


class DocumentUpdateSerializer(serializers.Serializer):
    title = StorableCharField(max_length=300, required=False)
    content = StorableCharField(required=False, trim_whitespace=False)
    collection_id = StrictIntegerField(required=False, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:  # an update that changes nothing is a client's mistake, not a success
            raise serializers.ValidationError("Send a 'title', a 'content', a 'collection_id' or some of them.")
        return attrs


class SearchInputSerializer(serializers.Serializer):
    query = StorableCharField(max_length=2000)
    k = StrictIntegerField(min_value=1, max_value=settings.SEARCH_MAX_K, default=5)
    max_distance = StrictFloatField(min_value=0.0, max_value=2.0, required=False)
    collection_ids = serializers.ListField(child=StrictIntegerField(min_value=1), max_length=1000, required=False)
    document_ids = serializers.ListField(child=StrictIntegerField(min_value=1), max_length=1000, required=False)


class SearchHitSerializer(serializers.Serializer):
    document_id = serializers.IntegerField()
    title = serializers.CharField()
    chunk_id = serializers.IntegerField()
    text = serializers.CharField()
    distance = serializers.FloatField()
    relevance = serializers.IntegerField(help_text="0-100 for people: 0 at the relevance threshold.")


class DocumentHitsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    document_id = serializers.IntegerField()
    title = serializers.CharField()
    relevance = serializers.IntegerField()
    passages = SearchHitSerializer(many=True)


class SearchOutputSerializer(serializers.Serializer):
    results = SearchHitSerializer(many=True, help_text="Passages within the relevance threshold, nearest first.")
    documents = DocumentHitsSerializer(many=True, help_text="The same passages, one entry per document.")


class UsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cache_creation_input_tokens = serializers.IntegerField()
    cache_read_input_tokens = serializers.IntegerField()


class SummaryOutputSerializer(serializers.Serializer):
    summary = serializers.CharField()
    usage = UsageSerializer()
    provider = serializers.CharField()
    model = serializers.CharField()


class MessageSerializer(serializers.ModelSerializer):
    html = serializers.SerializerMethodField(help_text="An answer's Markdown as sanitised HTML (empty for questions).")

    class Meta:
        model = Message
        fields = (
            "id",
            "role",
            "content",
            "html",
            "status",
            "error",
            "sources",
            "input_tokens",
            "output_tokens",
            "created",
        )
        read_only_fields = fields

    def get_html(self, message: Message) -> str:
        if message.role != Message.Role.ASSISTANT:
            return ""
        return citations_link(markdown_html(message.content), message.sources)  # [n] markers link to passages


class ConversationQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    q = StorableCharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="Only conversations whose title or messages contain this (blank: all).",
    )


class ConversationSerializer(serializers.ModelSerializer):
    title = StorableCharField(max_length=200, required=False, allow_blank=True)

    class Meta:
        model = Conversation
        fields: tuple[str, ...] = ("id", "title", "pinned", "created", "updated")
        read_only_fields = ("id", "pinned", "created", "updated")


class ConversationUpdateSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Rename (``title``), pin or unpin (``pinned``), or both."""

    title = StorableCharField(max_length=200, required=False)
    pinned = StrictBooleanField(required=False, help_text="Pinned conversations come first in the list.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Send a 'title', 'pinned', or both.")
        return attrs


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True, read_only=True)

    class Meta(ConversationSerializer.Meta):
        fields = (*ConversationSerializer.Meta.fields, "messages")


class ChatInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(
        choices=["message", "regenerate", "edit"],
        required=False,
        default="message",
        help_text="'regenerate' an answer (message_id) or 'edit' a question (message_id, message): the "
        "conversation continues from that question, and it and the turns after it are superseded.",
    )
    message = StorableCharField(trim_whitespace=True, required=False, help_text="Required unless regenerating.")
    message_id = StrictIntegerField(
        required=False, min_value=1, help_text="The answer to regenerate, or the question to edit."
    )
    conversation_id = StrictIntegerField(required=False, allow_null=True, min_value=1)
    collection_ids = serializers.ListField(
        child=StrictIntegerField(min_value=1), required=False, help_text="Read only these collections."
    )
    document_ids = serializers.ListField(
        child=StrictIntegerField(min_value=1), required=False, help_text="Read only these documents."
    )


class ChatCancelOutputSerializer(serializers.Serializer[dict[str, Any]]):
    message_id = serializers.IntegerField()
    cancelled = serializers.BooleanField(help_text="False if the answer had already ended.")


class FeedbackInputSerializer(serializers.Serializer):  # type: ignore[type-arg]
    rating = serializers.ChoiceField(choices=["up", "down"])
    comment = StorableCharField(max_length=2000, required=False, allow_blank=True, default="")


class FeedbackSerializer(serializers.Serializer):  # type: ignore[type-arg]
    message_id = serializers.IntegerField()
    rating = serializers.CharField()
    comment = serializers.CharField()
