"""Pages of the project: the public landing and signup pages, and the error pages (JSON under
/api/, HTML elsewhere, never a 500 for a missing route)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from csp.decorators import csp_update
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string

from billing.selectors import plans_offered
from core.platform.api import error_body
from core.platform.exceptions import ApplicationError, outage_error
from tenants.models import tenant_url
from tenants.selectors import tenant_get_by_subdomain


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def _error(request: HttpRequest, status: int, code: str, message: str, title: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body(code, message), status=status)
    context = {"status": status, "title": title, "message": message, "code": code}
    # Rendered without the request's context processors: an error page must not fail in its turn.
    return HttpResponse(render_to_string("error.html", context), status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return _error(request, 404, "not_found", "Not found.", "")
    message = "The address may be mistyped, or what was here has been moved or deleted."
    return _error(request, 404, "not_found", message, "This page does not exist")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = "You do not have permission to do this."
    return _error(request, 403, "permission_denied", message, "You cannot open this page")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400, "bad_request", "Bad request.", "The request could not be understood")


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler, called while the exception is handled (asgiref keeps ``exc_info``
    across its thread hop). An outage (database, pool, Redis) is a 503 and an ApplicationError
    raised outside the API (a login page's full hashing slots) answers its own status, both with
    Retry-After when they say when to come back; anything else is a 500."""
    exc = sys.exc_info()[1]
    error = (outage_error(exc) or (exc if isinstance(exc, ApplicationError) else None)) if exc else None
    if error is not None:
        response = _error(request, error.status, error.code, error.message, "Please try again in a moment")
        if "retry_after" in error.extra:
            response["Retry-After"] = str(error.extra["retry_after"])
        return response
    message = "Something went wrong on our side. It has been logged; please try again in a moment."
    return _error(request, 500, "server_error", message, "Something went wrong")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    message = "The form had expired or came from another site. Go back, reload the page and try again."
    return _error(request, 403, "csrf_failed", message, "Please reload and try again")


def unknown_tenant(request: HttpRequest) -> HttpResponse:
    message = "No organisation lives at this address. Check the spelling, or find your workspace from the home page."
    return _error(request, 404, "unknown_tenant", message, "No workspace here")


def _forms_may_go_to_workspaces(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The "Go" form's answer redirects to a workspace's host, and Chromium applies the page's
    form-action to where a form's redirects lead: the pages holding that form allow every
    workspace's origin (``*.BASE_DOMAIN``, read per request: tests move the port), no other page does."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        workspaces = tenant_url("*").rstrip("/")
        return cast(HttpResponse, csp_update({"form-action": [workspaces]})(view)(request, *args, **kwargs))

    return wrapped


@_forms_may_go_to_workspaces
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/home.html", {"plans": plans_offered(), "base_domain": settings.BASE_DOMAIN})


def signup_page(request: HttpRequest) -> HttpResponse:
    plans = plans_offered()
    context = {
        "plans": plans,
        "any_paid": any(plan.is_paid for plan in plans),  # else no word about Stripe
        "base_domain": settings.BASE_DOMAIN,
        "chosen": request.GET.get("plan", ""),
    }
    return render(request, "tenants/signup.html", context)


@_forms_may_go_to_workspaces
def workspace_go(request: HttpRequest) -> HttpResponse:
    """The home page's "go to your workspace" box: from a subdomain to that workspace's log-in page."""
    subdomain = request.GET.get("workspace", "").strip().lower()
    tenant = tenant_get_by_subdomain(subdomain=subdomain) if subdomain else None
    if tenant is None:
        context = {"plans": plans_offered(), "base_domain": settings.BASE_DOMAIN, "workspace": subdomain}
        context["workspace_error"] = f"No workspace is called “{subdomain}”." if subdomain else "Enter your workspace."
        return render(request, "tenants/home.html", context, status=404 if subdomain else 400)
    return redirect(f"{tenant.url}login/")
