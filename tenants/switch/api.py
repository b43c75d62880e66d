"""``GET /api/workspaces/``: the workspaces of the person calling, on any of their workspaces' hosts."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.platform.api import IsTenantPerson, TenantAPIView
from tenants.models import Membership
from tenants.switch.services import workspaces_list


class WorkspaceSerializer(serializers.Serializer[Membership]):
    name = serializers.CharField(source="tenant.name")
    subdomain = serializers.CharField(source="tenant.subdomain")
    url = serializers.CharField(source="tenant.url")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    current = serializers.SerializerMethodField()

    def get_current(self, membership: Membership) -> bool:
        return bool(membership.tenant_id == self.context["request"].tenant.pk)


class WorkspaceListSerializer(serializers.Serializer[Any]):
    results = WorkspaceSerializer(many=True)


class WorkspacesApi(TenantAPIView):
    """A person's workspaces (never an API key's: a key belongs to one workspace). Not paginated:
    one person's memberships are few."""

    membership_permission = IsTenantPerson

    @extend_schema(responses={200: WorkspaceListSerializer})
    def get(self, request: Request) -> Response:
        memberships = workspaces_list(user=request.user)  # type: ignore[arg-type]
        return Response(WorkspaceListSerializer({"results": memberships}, context={"request": request}).data)
