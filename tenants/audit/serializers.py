"""The audit API's query and its page, as the schema documents them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.platform.validators import storable_text
from tenants.audit.models import ActorType
from tenants.audit.selectors import MAX_PAGE_SIZE, PAGE_SIZE


class AuditQuerySerializer(serializers.Serializer[dict[str, object]]):
    actor = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=254,
        validators=[storable_text],
        help_text="user:<id>, key:<id>, a type (user, key, operator, anonymous, system), or an e-mail/label",
    )
    action = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=1000,
        validators=[storable_text],
        help_text="action names, comma-separated; auth.* matches a family",
    )
    since = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="an ISO date or date-time, inclusive"
    )
    until = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="an ISO date-time (exclusive), or a date (that whole day, UTC)",
    )
    cursor = serializers.IntegerField(
        required=False, min_value=1, help_text="from the previous page's next link (an entry id)"
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=PAGE_SIZE)
    format = serializers.ChoiceField(
        choices=["json", "jsonl", "csv"], default="json", help_text="jsonl or csv: the whole filtered log, streamed"
    )


class AuditActorSerializer(serializers.Serializer[dict[str, object]]):
    type = serializers.ChoiceField(choices=ActorType.choices)
    id = serializers.IntegerField(allow_null=True)
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label


class AuditEntrySerializer(serializers.Serializer[dict[str, object]]):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    actor = AuditActorSerializer()
    action = serializers.CharField()
    target = serializers.CharField()
    ip = serializers.IPAddressField(allow_null=True)
    changes = serializers.SerializerMethodField()

    @extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
    def get_changes(self, entry: dict[str, object]) -> object:
        return entry["changes"]


class AuditPageSerializer(serializers.Serializer[dict[str, object]]):
    results = AuditEntrySerializer(many=True)
    next = serializers.URLField(allow_null=True)
