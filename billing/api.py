"""Billing API: the public plan list and a tenant's usage this period."""

from __future__ import annotations

from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import Plan
from billing.serializers import PlanSerializer, UsageSummarySerializer
from billing.services import usage_summary
from core.api import TenantAPIView


class PlanListApi(generics.ListAPIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = PlanSerializer
    pagination_class = None
    queryset = Plan.objects.filter(is_public=True)


class UsageApi(TenantAPIView):
    def get(self, request: Request) -> Response:
        summary = usage_summary(tenant=request.tenant)
        return Response(UsageSummarySerializer(summary).data)
