"""Login lockouts (django-axes): the account key, and the 429 every login path answers when locked.

django-axes hooks ``django.contrib.auth.authenticate`` (a first backend that refuses locked-out
clients, and the ``user_login_failed`` signal that counts failures), so every login form and the
API login are covered without wiring in each view. These are the callables its settings name.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from core.platform.api import error_body

LOCKED_OUT_MESSAGE = "Too many failed logins. Try again in {minutes} minutes."


def login_username(request: Any, credentials: dict[str, Any] | None) -> str | None:
    """The account a login attempt names: one key for the API's ``email`` and the forms' ``username``."""
    credentials = credentials or {}
    value = credentials.get("username") or credentials.get("email")
    if not value and request is not None:
        data = getattr(request, "data", None) or getattr(request, "POST", {})
        value = data.get("username") or data.get("email") if hasattr(data, "get") else None
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()


def lockout_seconds() -> int:
    """How long a client waits once locked out (the cool-off; attempts meanwhile do not extend it)."""
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_message() -> str:
    return LOCKED_OUT_MESSAGE.format(minutes=max(1, lockout_seconds() // 60))


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """429 with Retry-After: the JSON error shape under /api/, the error page elsewhere."""
    message = lockout_message()
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("throttled", message), status=429)
    else:
        response = render(request, "error.html", {"status": 429, "message": message}, status=429)
    response["Retry-After"] = str(lockout_seconds())
    return response


def login_locked_out(request: Any) -> bool:
    """Whether django-axes refused (or just locked) this login. DRF views ask: axes flags the
    request object it was given, which for DRF is the wrapper, not the request its middleware sees."""
    return bool(getattr(request, "axes_locked_out", False))
