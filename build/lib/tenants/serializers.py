"""Account serializers: e-mail login limited to the host tenant's members, and the user details."""

from __future__ import annotations

from typing import Any

from dj_rest_auth.serializers import LoginSerializer
from rest_framework import serializers

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.selectors import membership_get


class TenantLoginSerializer(LoginSerializer):
    username = None  # type: ignore[assignment]
    email = serializers.EmailField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        request = self.context["request"]
        tenant = getattr(request, "tenant", None)
        user = attrs["user"]
        if tenant is not None and not tenant.is_public and membership_get(user=user, tenant=tenant) is None:
            raise ApplicationError("You are not a member of this organisation.", code="not_a_member", status=403)
        return attrs


class UserSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ("id", "email", "full_name", "role")
        read_only_fields = ("id", "email", "role")

    def get_role(self, user: User) -> str | None:
        tenant = getattr(self.context.get("request"), "tenant", None)
        if tenant is None or tenant.is_public:
            return None
        membership = membership_get(user=user, tenant=tenant)
        return membership.role if membership else None
