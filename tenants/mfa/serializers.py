"""Two-factor API shapes: the sign-in's code step, enrolment, authenticators, recovery codes, policy."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from rest_framework import serializers

from core.platform.fields import StrictBooleanField
from tenants.mfa.services import mfa_pending_user


class MfaPendingSerializer(serializers.Serializer[Any]):
    """The password step's answer when the person has two-factor sign-in on (no key yet)."""

    mfa_required = serializers.BooleanField(default=True)
    mfa_token = serializers.CharField(help_text="Send it with a code to POST /api/auth/login/mfa/.")
    expires_in = serializers.IntegerField(help_text="Seconds the token works.")
    methods = serializers.ListField(child=serializers.CharField(), help_text='"totp" and "recovery_codes".')


class MfaLoginSerializer(serializers.Serializer[Any]):
    """``{mfa_token, code}``: a current TOTP code or an unused recovery code. Validation is the
    authentication (tenants.mfa.backends), so a wrong code counts toward the lockout."""

    mfa_token = serializers.CharField(max_length=2000, trim_whitespace=True)
    code = serializers.CharField(max_length=64, trim_whitespace=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        request = self.context["request"]
        # An expired or foreign token is a 400 with its own code (mfa_token_expired/_invalid): log in again.
        pending = mfa_pending_user(mfa_token=attrs["mfa_token"], tenant=getattr(request, "tenant", None))
        user = authenticate(request, username=pending.email, mfa_token=attrs["mfa_token"], mfa_passcode=attrs["code"])
        if user is None:
            raise serializers.ValidationError("That code is not right.", code="mfa_code_invalid")
        attrs["user"] = user
        return attrs


class AuthenticatorSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=["totp", "recovery_codes"])
    created = serializers.DateTimeField()
    last_used = serializers.DateTimeField(allow_null=True)
    unused_codes = serializers.IntegerField(allow_null=True, help_text="Recovery codes left (recovery_codes only).")


class TotpEnrolmentSerializer(serializers.Serializer[Any]):
    secret = serializers.CharField(help_text="Base32, for apps that take the key typed in.")
    otpauth_url = serializers.CharField(help_text="otpauth://totp/... (what the QR code holds).")
    enrolment_token = serializers.CharField(help_text="Send it back with the first code.")
    expires_in = serializers.IntegerField()


class TotpConfirmSerializer(serializers.Serializer[Any]):
    enrolment_token = serializers.CharField(max_length=2000)
    code = serializers.CharField(max_length=16, trim_whitespace=True)


class RecoveryCodesSerializer(serializers.Serializer[Any]):
    recovery_codes = serializers.ListField(child=serializers.CharField(), help_text="Shown only in this answer.")


class TotpConfirmedSerializer(RecoveryCodesSerializer):
    authenticators = AuthenticatorSerializer(many=True)


class ReauthenticateSerializer(serializers.Serializer[Any]):
    """Either the account's password or a current code (TOTP or recovery)."""

    password = serializers.CharField(required=False, allow_blank=True, max_length=128, trim_whitespace=False)
    code = serializers.CharField(required=False, allow_blank=True, max_length=64)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("password") and not attrs.get("code"):
            raise serializers.ValidationError("Give your password or a current code.", code="required")
        return attrs


class MfaPolicySerializer(serializers.Serializer[Any]):
    # DRF's metaclass takes declared fields out of the class, so this does not hide Field.required.
    required = StrictBooleanField(  # type: ignore[assignment]
        help_text="Members must set up two-factor sign-in before anything else."
    )
