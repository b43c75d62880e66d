"""Account API: the login view, dj-rest-auth's, throttled per client address and locked per account."""

from __future__ import annotations

from typing import Any

from dj_rest_auth.serializers import TokenSerializer
from dj_rest_auth.views import LoginView
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from core.platform.login_lockout import lockout_message, lockout_seconds, login_locked_out
from core.platform.throttling import ScopedRateThrottle
from tenants.serializers import TenantLoginSerializer


class ThrottledLoginView(LoginView):
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"
    # No authentication: a client that kept the cookie of an earlier login must get the login's own
    # answer (400 for a wrong password), not a CSRF refusal from session authentication. JSON only,
    # which a cross-site form cannot send, so a login CSRF cannot plant a session either.
    authentication_classes: list[type[BaseAuthentication]] = []
    parser_classes = [JSONParser]

    @extend_schema(request=TenantLoginSerializer, responses={200: TokenSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            response: Response = super().post(request, *args, **kwargs)
            return response
        except exceptions.ValidationError:
            if login_locked_out(request):
                raise exceptions.Throttled(wait=lockout_seconds(), detail=lockout_message()) from None
            raise
