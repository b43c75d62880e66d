"""Billing API: the public plan list."""

from __future__ import annotations

from rest_framework import generics
from rest_framework.permissions import AllowAny

from billing.models import Plan
from billing.serializers import PlanSerializer


class PlanListApi(generics.ListAPIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    serializer_class = PlanSerializer
    pagination_class = None
    queryset = Plan.objects.filter(is_public=True)
