"""Account serializers: e-mail login (members only on a tenant host, see tenants.backends), user details."""

from __future__ import annotations

from typing import Any

from dj_rest_auth.serializers import LoginSerializer
from rest_framework import serializers

from core.models import User
from core.platform.fields import StorableCharField
from tenants.selectors import membership_get


class TenantLoginSerializer(LoginSerializer):
    username = None  # type: ignore[assignment]
    email = serializers.EmailField()

    def get_auth_user(self, username: str | None, email: str, password: str) -> Any:
        # Always through authenticate(): an unknown e-mail costs the same password hash as a known
        # one, and counts as a failed login for the lockout (dj-rest-auth skips both for it).
        return self.authenticate(username=email, password=password)


class UserSerializer(serializers.ModelSerializer):
    full_name = StorableCharField(max_length=150, required=False, allow_blank=True)
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
