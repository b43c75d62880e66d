"""Which tenant a host is (whatever its case), and refusing requests to suspended, unpaid or
closed tenants before any view runs.

The status check runs after the authentication middleware, so the page it shows can tell an owner (who can pay
or fix the payment method) from a member or a visitor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django_tenants.middleware.main import TenantMainMiddleware

from core.platform.api import error_body
from tenants.credentials import tenant_by_host
from tenants.models import Membership, Tenant
from tenants.scim.views import SCIM_PATH, scim_refusal
from tenants.selectors import membership_get

_BLOCKED = {
    Tenant.Status.SUSPENDED: (
        403,
        "tenant_suspended",
        "This organisation is suspended. {contact} to reactivate it.",
    ),
    Tenant.Status.PENDING_PAYMENT: (
        402,
        "payment_pending",
        "This organisation is waiting for its first payment to complete.",
    ),
    # Gone, for now: support can restore it until its deadline (config.lifecycle).
    Tenant.Status.CLOSED: (
        410,
        "workspace_closed",
        "This workspace has been closed. {contact} before {deadline:%d %B %Y} to restore it.",
    ),
}
# Paths that stay reachable so an owner can log in and pay: a pending tenant's first payment,
# or a tenant suspended for non-payment reaching the billing portal (invoice.paid reactivates it).
_ALWAYS_OPEN = ("/healthz", "/static/", "/api/auth/logout/")
_OPEN_WHILE_BLOCKED = {
    Tenant.Status.PENDING_PAYMENT: (
        "/api/auth/",
        "/api/billing/",
        "/billing/pay/",
        "/login/",
        "/logout/",
        "/password-reset/",
        "/reset/",
    ),
    Tenant.Status.CLOSED: (),
    Tenant.Status.SUSPENDED: (
        "/api/auth/",
        "/api/billing/portal/",
        "/billing/portal/",
        "/login/",
        "/logout/",
        "/password-reset/",
        "/reset/",
    ),
}


class TenantHostMiddleware(TenantMainMiddleware):  # type: ignore[misc]
    """django-tenants' tenant lookup, with host names compared as DNS does, whatever their case:
    ACME.example.com is acme's workspace, not an unknown one (domains are stored in lower case)."""

    @staticmethod
    def hostname_from_request(request: HttpRequest) -> str:
        return str(TenantMainMiddleware.hostname_from_request(request)).lower()

    def get_tenant(self, domain_model: Any, hostname: str) -> Any:
        # One schema-qualified statement, with the tenant's two-factor policy (tenants.mfa reads it
        # on every request); django-tenants answers DoesNotExist as an unknown host.
        tenant = tenant_by_host(hostname)
        if tenant is None:
            raise domain_model.DoesNotExist(hostname)
        return tenant


class TenantStatusMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public or request.path.startswith(_ALWAYS_OPEN):
            return self.get_response(request)
        blocked = _BLOCKED.get(tenant.status)
        if blocked is None or request.path.startswith(_OPEN_WHILE_BLOCKED[tenant.status]):
            return self.get_response(request)
        status, code, message = blocked
        message = message.format(contact=_support_contact(), deadline=tenant.delete_after)
        if request.path.startswith("/api/"):
            return JsonResponse(error_body(code, message), status=status)
        if request.path.startswith(SCIM_PATH):  # an identity provider, which reads SCIM errors only
            return scim_refusal(status=status, detail=message)
        context = {
            "tenant": tenant,
            "code": code,
            "message": message,
            "is_owner": _is_owner(request, tenant),
            "checkout": request.GET.get("checkout", ""),
            "support_email": settings.SUPPORT_EMAIL,
        }
        return render(request, "tenants/unavailable.html", context, status=status)


def _support_contact() -> str:
    """Who to write to: the operators' SUPPORT_EMAIL, else whoever runs the server."""
    if settings.SUPPORT_EMAIL:
        return f"Write to {settings.SUPPORT_EMAIL}"
    return "Ask the people who run this Strata server"


def _is_owner(request: HttpRequest, tenant: Tenant) -> bool:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return False
    membership = membership_get(user=user, tenant=tenant)
    return membership is not None and membership.role == Membership.Role.OWNER
