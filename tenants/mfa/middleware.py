"""A tenant that requires two-factor sign-in: a member without it gets nothing but the set-up.

Middleware, not a check in each view, so every page and endpoint is covered, including those
added later. API requests authenticated by a login token are checked too: DRF authenticates them
inside the view, so the token is looked up here as well (only on tenants with the policy on).
Tenant API keys are programs, not people: the policy does not apply to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from rest_framework.authtoken.models import Token

from core.platform.api import error_body
from tenants.mfa.services import mfa_enrolment_required, mfa_required_by
from tenants.mfa.views import SECURITY_PATH

# What a person who must enrol can still reach: the set-up itself, signing in and out, static files.
_OPEN = (
    "/api/auth/mfa/",
    "/api/mfa/policy/",  # reading why; changing it takes an owner who has two-factor on
    "/api/auth/login/",
    "/api/auth/logout/",
    SECURITY_PATH,
    "/login/",
    "/logout/",
    "/static/",
    "/healthz",
)
ENROLMENT_REQUIRED = "mfa_enrolment_required"
ENROLMENT_MESSAGE = "This organisation requires two-factor sign-in. Set it up at /account/security/ first."


def _token_user(request: HttpRequest) -> Any:
    header = request.headers.get("Authorization", "")
    keyword, _, key = header.partition(" ")
    if keyword != "Token" or not key.strip():
        return None
    token = Token.objects.select_related("user").filter(key=key.strip()).first()
    return token.user if token is not None and token.user.is_active else None


class MfaEnrolmentMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public or request.path.startswith(_OPEN) or not mfa_required_by(tenant=tenant):
            return self.get_response(request)
        is_api = request.path.startswith("/api/")
        user: Any = request.user
        session: Any = request.session
        if not user.is_authenticated and is_api:
            user, session = _token_user(request), None
        if user is None or not mfa_enrolment_required(user=user, tenant=tenant, session=session):
            return self.get_response(request)
        if is_api:
            return JsonResponse(error_body(ENROLMENT_REQUIRED, ENROLMENT_MESSAGE), status=403)
        return HttpResponseRedirect(f"{SECURITY_PATH}?required=1&next={quote(request.get_full_path())}")
