"""Pages of the project: the public landing and signup pages, and the error pages (JSON under
/api/, HTML elsewhere, never a 500 for a missing route)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from billing.models import Plan
from core.platform.api import error_body


def _error(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(error_body(code, message), status=status)
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404, "not_found", "Not found.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 403, "permission_denied", "You do not have permission to do this.")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400, "bad_request", "Bad request.")


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(request, 500, "server_error", "Something went wrong on our side.")


def unknown_tenant(request: HttpRequest) -> HttpResponse:
    return _error(request, 404, "unknown_tenant", "No organisation lives at this address.")


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/home.html", {"plans": Plan.objects.filter(is_public=True)})


def signup_page(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/signup.html", {"plans": Plan.objects.filter(is_public=True)})
