"""Account serializers: e-mail login limited to the host tenant's members, the user details,
password reset and change, invitations, members and API keys."""

from __future__ import annotations

from typing import Any

from dj_rest_auth import serializers as dj_rest_auth_serializers
from dj_rest_auth.serializers import LoginSerializer
from django.contrib.auth import update_session_auth_hash
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode
from rest_framework import serializers
from rest_framework.authtoken.models import Token

from core.models import User
from core.platform.fields import StorableCharField
from tenants.models import ApiKey, Invitation, Membership
from tenants.selectors import membership_get
from tenants.services.accounts import (
    password_reset_complete,
    password_reset_request,
    password_reset_tokens,
    password_set,
)


class TenantLoginSerializer(LoginSerializer):
    """E-mail and password; on a tenant host only its members get in (tenants.backends refuses the
    rest inside authentication, with the wrong password's answer)."""

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


# --- Password reset and change (dj-rest-auth's endpoints, through our services) ----------------


class PasswordResetSerializer(serializers.Serializer[Any]):
    """``{email}``: queues the reset e-mail through a job; the same for every address."""

    email = serializers.EmailField(max_length=254)

    def save(self, **kwargs: Any) -> None:
        request = self.context["request"]
        password_reset_request(email=self.validated_data["email"], tenant=getattr(request, "tenant", None))


class PasswordResetConfirmSerializer(dj_rest_auth_serializers.PasswordResetConfirmSerializer):  # type: ignore[misc]
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Our links carry Django's uid and token (tenants.services.accounts). dj-rest-auth reads
        # allauth's base-36 uids and tokens instead once allauth is installed (SSO, MFA): not here.
        try:
            self.user = User.objects.get(pk=force_str(urlsafe_base64_decode(attrs["uid"])))
        except (TypeError, ValueError, OverflowError, User.DoesNotExist):
            raise serializers.ValidationError({"uid": ["Invalid value"]}) from None
        tokens = password_reset_tokens(tenant=getattr(self.context["request"], "tenant", None))
        if not tokens.check_token(self.user, attrs["token"]):
            raise serializers.ValidationError({"token": ["Invalid value"]})
        self.set_password_form = self.set_password_form_class(user=self.user, data=attrs)
        if not self.set_password_form.is_valid():
            raise serializers.ValidationError(self.set_password_form.errors)
        return attrs

    def save(self) -> None:
        # A reset ends every session and deletes the login token: whoever had them is out.
        password_reset_complete(
            user=self.user,
            password=self.set_password_form.cleaned_data["new_password1"],
            tenant=getattr(self.context["request"], "tenant", None),
        )


class PasswordChangeSerializer(dj_rest_auth_serializers.PasswordChangeSerializer):  # type: ignore[misc]
    def save(self) -> str | None:
        """Set the password; other sessions and the login token end. Returns the new token's key
        when the change was made with the token (that client stays logged in with the new one)."""
        request = self.context["request"]
        with_token = isinstance(request.auth, Token)
        key = password_set(
            user=self.user, password=self.set_password_form.cleaned_data["new_password1"], keep_token=with_token
        )
        if request.auth is None:  # a session: this one stays, every other one is stale
            update_session_auth_hash(request._request, self.user)
        return key


class DetailSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField()


class PasswordChangedSerializer(DetailSerializer):
    key = serializers.CharField(required=False, help_text="The new login token, when the change was made with one.")


class WorkspacesFindSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(max_length=254)


# --- Invitations, members, API keys -------------------------------------------------------------


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    invited_by = serializers.SerializerMethodField()
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Invitation
        fields = ("id", "email", "role", "expires", "invited_by", "status", "created", "sent_at")
        read_only_fields = fields

    def get_invited_by(self, invitation: Invitation) -> str | None:
        return invitation.invited_by.email if invitation.invited_by else None


class InvitationCreateSerializer(serializers.Serializer[Any]):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)


class InvitationAcceptSerializer(serializers.Serializer[Any]):
    token = StorableCharField(max_length=200)
    name = StorableCharField(max_length=150, required=False, allow_blank=True)
    password = StorableCharField(max_length=128, required=False, allow_blank=True, trim_whitespace=False)


class AcceptedSerializer(serializers.Serializer[Any]):
    key = serializers.CharField()
    user = UserSerializer()


class MemberUserSerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ("id", "email", "full_name")
        read_only_fields = fields


class MemberSerializer(serializers.ModelSerializer[Membership]):
    user = MemberUserSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ("id", "user", "role", "created")
        read_only_fields = fields


class MemberUpdateSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class ApiKeySerializer(serializers.ModelSerializer[ApiKey]):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ("id", "name", "scope", "prefix", "created_by", "created", "last_used")
        read_only_fields = fields

    def get_created_by(self, api_key: ApiKey) -> str | None:
        return api_key.created_by.email if api_key.created_by else None


class ApiKeyCreateSerializer(serializers.Serializer[Any]):
    name = StorableCharField(max_length=100)
    scope = serializers.ChoiceField(choices=ApiKey.Scope.choices)


class ApiKeyCreatedSerializer(serializers.ModelSerializer[ApiKey]):
    key = serializers.CharField(help_text="The key itself: shown in this answer only.")

    class Meta:
        model = ApiKey
        fields = ("id", "name", "scope", "prefix", "key", "created")
        read_only_fields = fields
