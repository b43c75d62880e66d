"""Page guards for tenant hosts: a logged-in member of the host's tenant, or the login page."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import ensure_csrf_cookie

from tenants.selectors import membership_get


def member_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Send anonymous users and non-members to this tenant's login page; sets ``request.membership``."""

    @wraps(view)
    @ensure_csrf_cookie
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        tenant = getattr(request, "tenant", None)
        membership = None
        if request.user.is_authenticated and tenant is not None:
            membership = membership_get(user=request.user, tenant=tenant)
        if membership is None:
            if request.user.is_authenticated:
                # A session on this host without a membership here: the person was removed while
                # logged in. End it, or the login page would send them straight back here (a loop).
                logout(request)
            return redirect_to_login(request.get_full_path())
        # The page and its navigation read the role from here instead of asking again.
        request.membership = membership  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return guarded
