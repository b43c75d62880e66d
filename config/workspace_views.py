"""Closing a workspace from its own host: the owner's API call and the billing page's form (thin
adapters over config.lifecycle)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from config.lifecycle import workspace_close_by_owner
from config.serializers import WorkspaceClosedSerializer, WorkspaceCloseInputSerializer
from core.platform.api import IsTenantOwner, TenantAPIView
from core.platform.exceptions import ApplicationError
from core.platform.schema import error_responses
from tenants.decorators import member_required


class WorkspaceCloseApi(TenantAPIView):
    """The owner closes the workspace (202): access stops now; an operator can restore it until ``delete_after``."""

    membership_permission = IsTenantOwner

    @extend_schema(
        request=WorkspaceCloseInputSerializer, responses={202: WorkspaceClosedSerializer, **error_responses(409)}
    )
    def post(self, request: Request) -> Response:
        data = WorkspaceCloseInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = workspace_close_by_owner(
            tenant=request.tenant,  # type: ignore[attr-defined]
            user=request.user,  # type: ignore[arg-type]
            confirm=data.validated_data["confirm"],
            request=request,
        )
        return Response(WorkspaceClosedSerializer(tenant).data, status=status.HTTP_202_ACCEPTED)


@member_required
@require_POST
def workspace_close_page(request: HttpRequest) -> HttpResponse:
    try:
        workspace_close_by_owner(
            tenant=request.tenant,  # type: ignore[attr-defined]
            user=request.user,  # type: ignore[arg-type]
            confirm=request.POST.get("confirm", ""),
            request=request,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("billing-page")
    return redirect("/")  # the closed workspace's page: when it closed and until when it can be restored
