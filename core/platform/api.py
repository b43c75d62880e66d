"""Shared API plumbing: the JSON error shape and the tenant-scoped view base classes."""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.module_loading import import_string
from rest_framework import exceptions, viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from core.platform.credentials import TenantCredential, request_credential
from core.platform.exceptions import ApplicationError, outage_error

logger = logging.getLogger(__name__)

_CODES_BY_STATUS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


# When a 429 cannot say how long to wait (a DRF throttle with no history), this is the hint.
DEFAULT_RETRY_AFTER_SECONDS = 60


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn every API failure into ``{"error": {"code", "message", "fields"?}}``; an outage of the
    database or Redis is a 503; every 429, and every 503 that knows, says when to try again
    (``Retry-After``)."""
    outage = outage_error(exc)
    if outage is not None:
        logger.warning("answered 503: %s", exc.__class__.__name__, exc_info=exc)
        exc = outage
    response = _error_response(exc, context)
    if response is None or "Retry-After" in response:
        return response
    retry_after = exc.extra.get("retry_after") if isinstance(exc, ApplicationError) else None
    if response.status_code == 429:
        response["Retry-After"] = str(retry_after or DEFAULT_RETRY_AFTER_SECONDS)
    elif response.status_code == 503 and retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def _error_response(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.as_dict(), status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields, message = _validation_details(exc.detail)
        response.data = error_body("invalid", message, fields=fields)
        return response
    detail = getattr(exc, "detail", str(exc))
    code = getattr(detail, "code", None)
    if code in (None, "error", "invalid") or response.status_code in (401, 404, 405, 415):
        code = _CODES_BY_STATUS.get(response.status_code, "error")
    response.data = error_body(code, str(detail))
    return response


def _validation_details(detail: Any) -> tuple[Any, str]:
    if isinstance(detail, dict):
        first_field, first_errors = next(iter(detail.items()))
        first = first_errors[0] if isinstance(first_errors, list) and first_errors else first_errors
        if first_field == "non_field_errors":
            return detail, str(first)
        return detail, f"{first_field}: {first}"
    if isinstance(detail, list) and detail:
        return {"non_field_errors": detail}, str(detail[0])
    return {}, str(detail)


class IsTenantMember(BasePermission):
    """The user holds a Membership in the tenant that the request's host selected, or the request
    carries an API key of that tenant (``api_keys_allowed``) whose scope covers the method."""

    message = "You are not a member of this organisation."
    # Role-based permissions (admins, owners) need a person: they turn this off.
    api_keys_allowed = True

    def has_permission(self, request: Request, view: APIView) -> bool:
        # The tenant the host selected (django-tenants) answers for its own members, so this
        # bottom layer needs no import of the tenants app.
        tenant = getattr(request, "tenant", None)
        request.membership = None  # type: ignore[attr-defined]
        if tenant is None or tenant.is_public or not request.user.is_authenticated:
            return False
        credential = request_credential(request)
        if credential is not None:
            return self.api_key_admitted(credential, tenant=tenant, request=request, view=view)
        membership = tenant.membership_of(request.user)
        request.membership = membership  # type: ignore[attr-defined]
        return membership is not None

    def api_key_admitted(self, credential: TenantCredential, *, tenant: Any, request: Request, view: APIView) -> bool:
        if not self.api_keys_allowed or credential.tenant_id != tenant.pk:
            return False
        writes = request.method not in SAFE_METHODS and not getattr(view, "read_only_post", False)
        if writes and not credential.allows_write:
            raise exceptions.PermissionDenied("This API key may only read.", code="read_only_key")
        return True


class IsTenantAdmin(IsTenantMember):
    message = "Only owners and admins of this organisation may do this."
    api_keys_allowed = False

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.membership is not None and request.membership.can_administer  # type: ignore[attr-defined]


class IsTenantOwner(IsTenantMember):
    """An owner of the host's tenant, in person: billing, sign-in, provisioning, closing. Views
    say what they guard in their own ``message``."""

    message = "Only owners of this organisation may do this."
    api_keys_allowed = False

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.membership is not None and request.membership.is_owner  # type: ignore[attr-defined]


class IsTenantPerson(IsTenantMember):
    """A member of the host's tenant, in person (no API key): account and team pages and APIs."""

    api_keys_allowed = False


_SEALED = ("get_permissions", "check_permissions", "initial")


@functools.cache
def _tenant_authentication_classes() -> list[type[BaseAuthentication]]:
    """The default classes plus TENANT_API_KEY_AUTHENTICATION: named in settings, so this layer
    needs no import of the app that stores keys, and only tenant API views accept keys (never
    the account endpoints: a key cannot change a password or read a profile)."""
    classes: list[type[BaseAuthentication]] = list(api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    key_class = getattr(settings, "TENANT_API_KEY_AUTHENTICATION", "")
    if key_class:
        classes.insert(1, import_string(key_class))
    return classes


class _TenantScoped:
    """Authentication and tenant membership are enforced for every subclass.

    Subclasses add permissions through ``extra_permission_classes``; they may not
    override ``get_permissions``, ``check_permissions`` or ``initial``, so the
    membership check can't be dropped by accident.
    """

    extra_permission_classes: tuple[type[BasePermission], ...] = ()
    membership_permission: type[BasePermission] = IsTenantMember
    # Set on a view whose POST only reads (a search): a ``read`` API key may call it.
    read_only_post = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _SEALED:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} may not override {name}(); use extra_permission_classes.")

    def get_authenticators(self) -> list[BaseAuthentication]:
        # People authenticate by token or session; programs by a tenant API key as well.
        return [authentication() for authentication in _tenant_authentication_classes()]

    def get_permissions(self) -> list[BasePermission]:
        classes = (IsAuthenticated, self.membership_permission, *self.extra_permission_classes)
        return [permission() for permission in classes]


class TenantAPIView(_TenantScoped, APIView):
    """An APIView on a tenant host, for members of that tenant only."""


class TenantModelViewSet(_TenantScoped, viewsets.ModelViewSet):
    """A ModelViewSet on a tenant host, for members of that tenant only."""


class TenantGenericViewSet(_TenantScoped, viewsets.GenericViewSet):
    """A GenericViewSet on a tenant host, for members of that tenant only."""
