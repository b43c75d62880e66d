"""Page guards for tenant hosts: a logged-in member of the host's tenant, or the login page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie

from tenants.selectors import membership_get


def member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Send anonymous users and non-members to this tenant's login page."""

    @wraps(view)
    @ensure_csrf_cookie
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        if (
            not request.user.is_authenticated
            or tenant is None
            or membership_get(user=request.user, tenant=tenant) is None
        ):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return guarded
