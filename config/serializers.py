"""Input and output shapes of the public signup API and of closing a workspace."""

from typing import Any

from rest_framework import serializers

from core.platform.fields import StorableCharField


class SignupInputSerializer(serializers.Serializer):
    organisation = StorableCharField(max_length=120)
    name = StorableCharField(
        max_length=150, required=False, allow_blank=True, default="", help_text="The owner's name."
    )
    subdomain = StorableCharField(max_length=63)
    email = serializers.EmailField()
    password = StorableCharField(max_length=128, trim_whitespace=False, style={"input_type": "password"})
    plan = serializers.SlugField(max_length=40, default="free")


class SignupTenantSerializer(serializers.Serializer):
    name = serializers.CharField()
    subdomain = serializers.CharField()
    url = serializers.CharField()
    status = serializers.CharField()


class SignupUserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()


class SignupOutputSerializer(serializers.Serializer):
    tenant = SignupTenantSerializer()
    user = SignupUserSerializer()
    token = serializers.CharField()
    checkout_url = serializers.CharField(allow_null=True)
    login_url = serializers.CharField(
        allow_null=True, required=False, help_text="Opened within 10 minutes, logs the owner in once."
    )
    note = serializers.CharField(allow_null=True, required=False)


class WorkspaceCloseInputSerializer(serializers.Serializer[Any]):
    confirm = StorableCharField(max_length=63, help_text="The workspace's subdomain, typed to confirm.")


class WorkspaceClosedSerializer(serializers.Serializer[Any]):
    status = serializers.CharField()
    closed_at = serializers.DateTimeField()
    delete_after = serializers.DateTimeField(help_text="Until then an operator can restore the workspace.")
