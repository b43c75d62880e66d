"""Two-factor API: the sign-in's code step (both hosts), one's own authenticators (tenant hosts), and
the tenant's policy (owners). Thin adapters over tenants.mfa.services."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from core.models import User
from core.platform.api import IsTenantPerson, TenantAPIView
from core.platform.schema import error_responses
from core.platform.throttling import ScopedRateThrottle
from tenants.api import ThrottledLoginView
from tenants.mfa.serializers import (
    AuthenticatorSerializer,
    MfaLoginSerializer,
    MfaPolicySerializer,
    ReauthenticateSerializer,
    RecoveryCodesSerializer,
    TotpConfirmedSerializer,
    TotpConfirmSerializer,
    TotpEnrolmentSerializer,
)
from tenants.mfa.services import (
    authenticators_list,
    mfa_disable,
    mfa_policy_get,
    mfa_policy_set,
    recovery_codes_regenerate,
    totp_enrol_confirm,
    totp_enrol_start,
)


def _person(request: Request) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _no_store(response: Response) -> Response:
    response["Cache-Control"] = "no-store"  # secrets and recovery codes
    return response


class MfaLoginApi(ThrottledLoginView):
    """``{mfa_token, code}`` -> ``{key}``: the second step of a sign-in, with the same throttle and
    lockout as the password step."""

    serializer_class = MfaLoginSerializer

    def mfa_pending(self) -> Response | None:
        return None  # this is the code step: sign in


class _AccountMfaView(TenantAPIView):
    """One's own second factor, in person (no API key), on a tenant host one is a member of."""

    membership_permission = IsTenantPerson


class AuthenticatorsApi(_AccountMfaView):
    @extend_schema(responses={200: AuthenticatorSerializer(many=True)})
    def get(self, request: Request) -> Response:
        found = authenticators_list(user=_person(request))
        return Response(AuthenticatorSerializer(found, many=True).data)


class TotpEnrolApi(_AccountMfaView):
    """Start: a new secret and its otpauth URL. Nothing is on until ``confirm`` gets a valid code."""

    @extend_schema(request=None, responses={200: TotpEnrolmentSerializer, **error_responses(409)})
    def post(self, request: Request) -> Response:
        enrolment = totp_enrol_start(user=_person(request))
        body = {
            "secret": enrolment.secret,
            "otpauth_url": enrolment.otpauth_url,
            "enrolment_token": enrolment.enrolment_token,
            "expires_in": settings.MFA_ENROL_MAX_AGE,
        }
        return _no_store(Response(TotpEnrolmentSerializer(body).data))


class TotpConfirmApi(_AccountMfaView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=TotpConfirmSerializer, responses={201: TotpConfirmedSerializer, **error_responses(409)})
    def post(self, request: Request) -> Response:
        data = TotpConfirmSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _person(request)
        codes = totp_enrol_confirm(user=user, tenant=request.tenant, request=request, **data.validated_data)  # type: ignore[attr-defined]
        body = {"recovery_codes": codes, "authenticators": authenticators_list(user=user)}
        return _no_store(Response(TotpConfirmedSerializer(body).data, status=status.HTTP_201_CREATED))


class MfaDisableApi(_AccountMfaView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=ReauthenticateSerializer, responses={204: None, **error_responses(409)})
    def post(self, request: Request) -> Response:
        data = ReauthenticateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mfa_disable(user=_person(request), tenant=request.tenant, request=request, **data.validated_data)  # type: ignore[attr-defined]
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecoveryCodesApi(_AccountMfaView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    @extend_schema(request=ReauthenticateSerializer, responses={200: RecoveryCodesSerializer, **error_responses(409)})
    def post(self, request: Request) -> Response:
        data = ReauthenticateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        codes = recovery_codes_regenerate(user=_person(request), **data.validated_data)
        return _no_store(Response(RecoveryCodesSerializer({"recovery_codes": codes}).data))


class MfaPolicyApi(_AccountMfaView):
    """Every member reads the policy; only owners change it (the service says so)."""

    @extend_schema(responses={200: MfaPolicySerializer})
    def get(self, request: Request) -> Response:
        policy = mfa_policy_get(tenant=request.tenant)  # type: ignore[attr-defined]
        return Response(MfaPolicySerializer(policy).data)

    @extend_schema(request=MfaPolicySerializer, responses={200: MfaPolicySerializer, **error_responses(403)})
    def put(self, request: Request) -> Response:
        data = MfaPolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = mfa_policy_set(
            tenant=request.tenant,  # type: ignore[attr-defined]
            actor=_person(request),
            required=data.validated_data["required"],
            request=request,
        )
        return Response(MfaPolicySerializer(policy).data)
