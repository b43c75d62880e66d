"""Account and team API: login, password reset and change, finding one's workspaces (public host),
invitations, members and API keys (tenant hosts). Thin adapters over tenants.services."""

from __future__ import annotations

from typing import Any

from dj_rest_auth import views as dj_rest_auth_views
from dj_rest_auth.serializers import TokenSerializer
from dj_rest_auth.views import LoginView
from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.views import APIView

from core.models import User
from core.platform.api import IsTenantAdmin, IsTenantPerson, TenantGenericViewSet
from core.platform.exceptions import ApplicationError
from core.platform.json import JSONParser
from core.platform.login_lockout import lockout_message, lockout_seconds, login_locked_out
from core.platform.schema import error_responses
from core.platform.throttling import ScopedRateThrottle
from tenants import selectors
from tenants.mfa.serializers import MfaPendingSerializer
from tenants.mfa.services import mfa_enabled, mfa_pending_issue
from tenants.models import ApiKey, Invitation, Membership
from tenants.serializers import (
    AcceptedSerializer,
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    DetailSerializer,
    InvitationAcceptSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
    PasswordChangedSerializer,
    TenantLoginSerializer,
    WorkspacesFindSerializer,
)
from tenants.services.accounts import workspaces_find_request
from tenants.services.api_keys import api_key_create, api_key_revoke
from tenants.services.invitations import invitation_accept, invitation_create, invitation_resend, invitation_revoke
from tenants.services.members import membership_remove, membership_role_change
from tenants.throttles import AccountLinkThrottle, AccountMailThrottle


def _person(request: Request) -> User:
    """The person making a request that the view's permissions already required to be one."""
    user = request.user
    assert isinstance(user, User)
    return user


# The one answer to "e-mail me" requests, whatever the address: nothing tells whether it has an account.
MAIL_QUEUED = "If this address has an account, an e-mail is on its way to it."


class ThrottledLoginView(LoginView):
    """Throttled per client address, and locked out per address and per account (django-axes)."""

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    # No authentication: a client that kept the cookie of an earlier login must get the login's own
    # answer (400 for a wrong password), not a CSRF refusal from session authentication. JSON only,
    # which a cross-site form cannot send, so a login CSRF cannot plant a session either.
    authentication_classes: list[type[BaseAuthentication]] = []
    parser_classes = [JSONParser]

    # With two-factor sign-in on, a correct password answers {mfa_required, mfa_token} and no key:
    # POST /api/auth/login/mfa/ with the token and a code signs in (tenants.mfa).
    @extend_schema(
        request=TenantLoginSerializer,
        responses={
            200: PolymorphicProxySerializer(
                component_name="LoginResult",
                serializers=[TokenSerializer, MfaPendingSerializer],
                resource_type_field_name=None,
            )
        },
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.request = request
        self.serializer = self.get_serializer(data=request.data)
        try:
            self.serializer.is_valid(raise_exception=True)
        except exceptions.ValidationError:
            if login_locked_out(request):
                raise exceptions.Throttled(wait=lockout_seconds(), detail=lockout_message()) from None
            raise
        pending = self.mfa_pending()
        if pending is not None:
            return pending
        self.login()
        response: Response = self.get_response()
        return response

    def mfa_pending(self) -> Response | None:
        return mfa_pending_response(self.request, user=self.serializer.validated_data["user"])


def mfa_pending_response(request: Request, *, user: User) -> Response | None:
    """The code step's token instead of a key, for a person with two-factor sign-in on whose password
    was right (a login, or an invitation accepted with the password); None: hand out the key."""
    if not mfa_enabled(user=user):
        return None
    token = mfa_pending_issue(user=user, tenant=getattr(request, "tenant", None))
    body = {
        "mfa_required": True,
        "mfa_token": token,
        "expires_in": settings.MFA_LOGIN_MAX_AGE,
        "methods": ["totp", "recovery_codes"],
    }
    response = Response(MfaPendingSerializer(body).data)
    response["Cache-Control"] = "no-store"
    return response


class PasswordResetApi(dj_rest_auth_views.PasswordResetView):  # type: ignore[misc]
    """``{email}`` -> always 200 with the same body; the e-mail (if any) is sent by a job."""

    throttle_classes = [AccountMailThrottle]

    @extend_schema(responses={200: DetailSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save()
        return Response({"detail": MAIL_QUEUED})


class PasswordResetConfirmApi(dj_rest_auth_views.PasswordResetConfirmView):  # type: ignore[misc]
    throttle_classes = [AccountLinkThrottle]


class PasswordChangeApi(dj_rest_auth_views.PasswordChangeView):  # type: ignore[misc]
    """Needs the old password. Other sessions end and the login token is deleted; a client that
    made the change with its token gets the new token as ``key``."""

    throttle_classes = [AccountLinkThrottle]

    @extend_schema(responses={200: PasswordChangedSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = serializer.save()
        body = {"detail": "New password has been saved."}
        if key:
            body["key"] = key
        return Response(body)


class WorkspacesFindApi(APIView):
    """Public host: ``{email}`` -> always 200 with the same body; the list goes by e-mail."""

    authentication_classes: list[type[BaseAuthentication]] = []
    permission_classes = [AllowAny]
    throttle_classes = [AccountMailThrottle]

    @extend_schema(request=WorkspacesFindSerializer, responses={200: DetailSerializer})
    def post(self, request: Request) -> Response:
        data = WorkspacesFindSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        workspaces_find_request(email=data.validated_data["email"])
        return Response({"detail": MAIL_QUEUED})


class InvitationAcceptApi(APIView):
    """``{token, name?, password?}`` on the tenant's host: a new person sets name and password; an
    existing account is logged in (token or session) or gives its password. -> ``{key, user}``."""

    permission_classes = [AllowAny]
    throttle_classes = [AccountLinkThrottle]

    # 404 unknown or revoked link, 410 used or expired, 401 an existing account that must log in first.
    @extend_schema(
        request=InvitationAcceptSerializer, responses={200: AcceptedSerializer, **error_responses(401, 404, 410)}
    )
    def post(self, request: Request) -> Response:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public:
            raise ApplicationError("Not found.", code="not_found", status=404)
        data = InvitationAcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        signed_in = request.user if request.user.is_authenticated else None
        accepted = invitation_accept(
            tenant=tenant,
            token=data.validated_data["token"],
            user=signed_in,
            name=data.validated_data.get("name", ""),
            password=data.validated_data.get("password", ""),
        )
        pending = mfa_pending_response(request, user=accepted.user) if signed_in is None else None
        if pending is not None:
            return pending  # joined; signing in takes the code (POST /api/auth/login/mfa/)
        token, _ = Token.objects.get_or_create(user=accepted.user)
        return Response(
            AcceptedSerializer({"key": token.key, "user": accepted.user}, context={"request": request}).data
        )


class InvitationViewSet(mixins.ListModelMixin, TenantGenericViewSet):
    """Open and expired invitations of this tenant (owners and admins)."""

    membership_permission = IsTenantAdmin
    serializer_class = InvitationSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Invitation]:
        return selectors.invitations_open(tenant=self.request.tenant)  # type: ignore[attr-defined]

    # INVITATIONS_PER_TENANT_PER_HOUR: 429 with Retry-After past the limit.
    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSerializer, **error_responses(429)})
    def create(self, request: Request) -> Response:
        data = InvitationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        invitation = invitation_create(tenant=request.tenant, actor=_person(request), **data.validated_data)  # type: ignore[attr-defined]
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: InvitationSerializer, **error_responses(429)})
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str) -> Response:
        invitation = invitation_resend(tenant=request.tenant, actor=_person(request), invitation_id=int(pk))  # type: ignore[attr-defined]
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        invitation_revoke(tenant=request.tenant, actor=_person(request), invitation_id=int(pk))  # type: ignore[attr-defined]
        return Response(status=status.HTTP_204_NO_CONTENT)


class AdministersForWrites(BasePermission):
    """Every member sees the list; changing it takes an owner or admin (the service says which)."""

    message = "Only owners and admins of this organisation may do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        membership = getattr(request, "membership", None)
        return request.method in SAFE_METHODS or (membership is not None and membership.can_administer)


class MemberViewSet(mixins.ListModelMixin, TenantGenericViewSet):
    membership_permission = IsTenantPerson
    extra_permission_classes = (AdministersForWrites,)
    serializer_class = MemberSerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.members_list(tenant=self.request.tenant)  # type: ignore[attr-defined]

    @extend_schema(request=MemberUpdateSerializer, responses={200: MemberSerializer})
    def partial_update(self, request: Request, pk: str) -> Response:
        data = MemberUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = membership_role_change(
            tenant=request.tenant,  # type: ignore[attr-defined]
            actor=_person(request),
            membership_id=int(pk),
            role=data.validated_data["role"],
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(responses={204: None, **error_responses(400)})
    def destroy(self, request: Request, pk: str) -> Response:
        membership_remove(tenant=request.tenant, actor=_person(request), membership_id=int(pk))  # type: ignore[attr-defined]
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyViewSet(mixins.ListModelMixin, TenantGenericViewSet):
    """This tenant's live API keys (owners and admins); the key itself is in the create answer only."""

    membership_permission = IsTenantAdmin
    serializer_class = ApiKeySerializer
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[ApiKey]:
        return selectors.api_keys_list(tenant=self.request.tenant)  # type: ignore[attr-defined]

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, key = api_key_create(tenant=request.tenant, created_by=_person(request), **data.validated_data)  # type: ignore[attr-defined]
        api_key.key = key  # type: ignore[attr-defined]
        response = Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        api_key_revoke(tenant=request.tenant, api_key_id=int(pk), actor=_person(request))  # type: ignore[attr-defined]
        return Response(status=status.HTTP_204_NO_CONTENT)


router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("members", MemberViewSet, basename="member")
router.register("keys", ApiKeyViewSet, basename="api-key")
