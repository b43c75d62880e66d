"""A person's data and a workspace's export on a tenant host: ``POST /api/account/export/``,
``DELETE /api/account/``, the owner's export button on the billing page, and the download behind a
mailed link. Thin adapters over config.personal_data and config.tenant_archive."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response

from config.downloads import download_open
from config.personal_data import account_delete, account_export_request, sign_in_is_fresh
from config.tenant_archive import tenant_export_request
from core.models import User
from core.platform.api import IsTenantPerson, TenantAPIView
from core.platform.exceptions import ApplicationError
from core.platform.schema import error_responses
from tenants.decorators import member_required
from tenants.models import Membership
from tenants.throttles import AccountLinkThrottle, AccountMailThrottle

EXPORT_QUEUED = "Your data is being gathered; a download link is on its way to your e-mail address."


class _Detail(serializers.Serializer[Any]):
    detail = serializers.CharField()


class _Password(serializers.Serializer[Any]):
    # Not needed by someone who signs in only through single sign-on, right after signing in.
    password = serializers.CharField(trim_whitespace=False, required=False)


def _person(request: Request | HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


class AccountExportApi(TenantAPIView):
    """The person's own data, as a zip of JSON mailed as a link (a job builds it)."""

    membership_permission = IsTenantPerson
    throttle_classes = [AccountMailThrottle]

    @extend_schema(request=None, responses={202: _Detail, **error_responses(429)})
    def post(self, request: Request) -> Response:
        account_export_request(user=_person(request), tenant=request.tenant)  # type: ignore[attr-defined]
        return Response({"detail": EXPORT_QUEUED}, status=status.HTTP_202_ACCEPTED)


class AccountApi(TenantAPIView):
    """Deleting one's own account, on every workspace (409 ``last_owner`` for a last owner)."""

    membership_permission = IsTenantPerson
    throttle_classes = [AccountLinkThrottle]

    @extend_schema(request=_Password, responses={204: None, **error_responses(400, 403, 409)})
    def delete(self, request: Request) -> Response:
        data = _Password(data=request.data)
        data.is_valid(raise_exception=True)
        person = _person(request)
        by_session = isinstance(request.successful_authenticator, SessionAuthentication)
        account_delete(
            user=person,
            password=data.validated_data.get("password"),
            fresh_sign_in=by_session and sign_in_is_fresh(user=person, tenant=request.tenant),  # type: ignore[attr-defined]
        )
        # The session is dead anyway (its user is gone); flushed without the logout signal, which
        # would name the deleted person in the audit log again.
        request._request.session.flush()
        return Response(status=status.HTTP_204_NO_CONTENT)


@member_required
@require_POST
def account_export_page(request: HttpRequest) -> HttpResponse:
    """The account page's "Download my data" button."""
    account_export_request(user=_person(request), tenant=request.tenant)  # type: ignore[attr-defined]
    messages.success(request, EXPORT_QUEUED)
    return redirect("account-page")


@member_required
@require_POST
def account_delete_page(request: HttpRequest) -> HttpResponse:
    """The account page's "Delete my account" form (its password confirms it)."""
    try:
        person = _person(request)
        account_delete(
            user=person,
            password=request.POST.get("password", ""),
            fresh_sign_in=sign_in_is_fresh(user=person, tenant=request.tenant),  # type: ignore[attr-defined]
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("account-page")
    request.session.flush()  # as in AccountApi: no logout signal naming the deleted person
    messages.success(request, "Your account was deleted.")
    return redirect("/login/")


@member_required
@require_POST
def tenant_export_page(request: HttpRequest) -> HttpResponse:
    """The billing page's "Export workspace" button (owners)."""
    try:
        tenant_export_request(tenant=request.tenant, user=_person(request))  # type: ignore[attr-defined]
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "The export is being prepared; a download link is on its way to your e-mail address.")
    return redirect("billing-page")


@member_required  # type: ignore[arg-type]  # a file, not a page: FileResponse is no HttpResponse
@require_GET
def download_page(request: HttpRequest, token: str) -> HttpResponseBase:
    """The file behind a mailed link: for the person it was made for, signed in on this host (and
    for a workspace archive, still one of its owners)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    try:
        download = download_open(token=token)
        allowed = download.user_id == request.user.pk and download.tenant_id == tenant.pk
        if allowed and download.kind == "tenant":
            owners = Membership.objects.for_tenant(tenant).filter(role=Membership.Role.OWNER)
            allowed = owners.filter(user=_person(request)).exists()
        if not allowed:
            raise ApplicationError("This download link is not valid.", code="link_invalid", status=404)
    except ApplicationError as exc:
        return render(
            request, "config/download_unavailable.html", {"message": exc.message, "page": "account"}, status=exc.status
        )
    response = FileResponse(download.path.open("rb"), as_attachment=True, filename=download.filename)
    response["Cache-Control"] = "no-store"
    return response
