"""API shapes of the AI app."""

from rest_framework import serializers

from ai.models import Document


class DocumentSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)

    class Meta:
        model = Document
        fields = ("id", "title", "content", "created_by", "created", "updated")
        read_only_fields = ("id", "created_by", "created", "updated")
