"""Refuses requests to suspended or unpaid tenants before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from core.platform.api import error_body
from tenants.models import Tenant

_BLOCKED = {
    Tenant.Status.SUSPENDED: (
        403,
        "tenant_suspended",
        "This organisation is suspended. Contact support to reactivate it.",
    ),
    Tenant.Status.PENDING_PAYMENT: (
        402,
        "payment_pending",
        "This organisation is waiting for its first payment to complete.",
    ),
}
# Paths that stay reachable so an owner can log in and pay: a pending tenant's first payment,
# or a tenant suspended for non-payment reaching the billing portal (invoice.paid reactivates it).
_ALWAYS_OPEN = ("/healthz", "/static/", "/api/auth/logout/")
_OPEN_WHILE_BLOCKED = {
    Tenant.Status.PENDING_PAYMENT: ("/api/auth/", "/api/billing/", "/login/", "/logout/"),
    Tenant.Status.SUSPENDED: ("/api/auth/", "/api/billing/portal/"),
}


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
        if request.path.startswith("/api/"):
            return JsonResponse(error_body(code, message), status=status)
        return render(
            request, "tenants/unavailable.html", {"tenant": tenant, "code": code, "message": message}, status=status
        )
