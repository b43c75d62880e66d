"""Billing API: public plan list and Stripe webhooks; a tenant's usage, checkout and billing portal."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from billing.models import Plan
from billing.selectors import plans_offered
from billing.serializers import PlanSerializer, SessionUrlSerializer, UsageSummarySerializer, WebhookOutcomeSerializer
from billing.services import checkout_session_start, portal_session_start, usage_summary, webhook_event_receive
from core.platform.api import IsTenantOwner, TenantAPIView
from core.platform.schema import error_responses


class BillingOwner(IsTenantOwner):
    message = "Only owners of this organisation may manage its billing."


class PlanListApi(generics.ListAPIView):
    """The plans a customer can choose on this server (a paid plan without a Stripe price is not one)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = PlanSerializer
    pagination_class = None

    def get_queryset(self) -> list[Plan]:  # type: ignore[override]
        return plans_offered()


class UsageApi(TenantAPIView):
    @extend_schema(responses=UsageSummarySerializer)
    def get(self, request: Request) -> Response:
        summary = usage_summary(tenant=request.tenant)  # type: ignore[attr-defined]
        return Response(UsageSummarySerializer(summary).data)


class PortalApi(TenantAPIView):
    membership_permission = BillingOwner

    @extend_schema(request=None, responses={200: SessionUrlSerializer, **error_responses(409, 503)})
    def post(self, request: Request) -> Response:
        url = portal_session_start(tenant=request.tenant)  # type: ignore[attr-defined]
        return Response(SessionUrlSerializer({"url": url}).data)


class CheckoutApi(TenantAPIView):
    """A fresh Checkout Session for an organisation still waiting for its first payment."""

    membership_permission = BillingOwner

    @extend_schema(request=None, responses={200: SessionUrlSerializer, **error_responses(409, 503)})
    def post(self, request: Request) -> Response:
        url = checkout_session_start(tenant=request.tenant, user=request.user)  # type: ignore[attr-defined]
        return Response(SessionUrlSerializer({"url": url}).data)


class StripeWebhookApi(APIView):
    """Stripe calls this: no session, no token, no CSRF; the signature is the authentication."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        parameters=[
            OpenApiParameter(
                "Stripe-Signature",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="Stripe's HMAC signature of the raw body.",
            )
        ],
        responses={200: WebhookOutcomeSerializer, **error_responses(503)},
    )
    def post(self, request: Request) -> Response:
        # The raw bytes, exactly as signed: request.data would parse and re-serialise them.
        outcome = webhook_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature"))
        return Response(WebhookOutcomeSerializer(outcome).data)
