"""Public-host API: organisation signup (a use case above tenants and billing)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.serializers import SignupInputSerializer, SignupOutputSerializer
from config.signup import tenant_signup
from core.platform.schema import error_responses
from core.platform.throttling import ScopedRateThrottle
from tenants.welcome import welcome_url


class SignupApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "signup"

    @extend_schema(request=SignupInputSerializer, responses={201: SignupOutputSerializer, **error_responses(503)})
    def post(self, request: Request) -> Response:
        data = SignupInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = tenant_signup(**data.validated_data, request=request)
        output = SignupOutputSerializer(
            {
                "tenant": {
                    "name": result.tenant.name,
                    "subdomain": result.tenant.subdomain,
                    "url": result.tenant.url,
                    "status": result.tenant.status,
                },
                "user": {"id": result.user.id, "email": result.user.email},
                "token": result.token,
                "checkout_url": result.checkout_url,
                # A free (or DEBUG-activated) workspace is ready: its page follows this link logged in.
                "login_url": None if result.checkout_url else welcome_url(user=result.user, tenant=result.tenant),
                "note": result.note,
            }
        )
        return Response(output.data, status=status.HTTP_201_CREATED)
