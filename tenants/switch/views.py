"""The switcher's pages: leaving one workspace for another (its host), and arriving there signed in."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core.platform.exceptions import ApplicationError
from tenants.decorators import member_required
from tenants.selectors import membership_get
from tenants.switch.services import workspace_handoff_redeem, workspace_switch

_SESSION_BACKEND = "tenants.backends.TenantMemberBackend"  # the session a password login makes


@never_cache
@require_POST
@member_required
def workspace_switch_page(request: HttpRequest) -> HttpResponse:
    """``POST {workspace: <subdomain>}`` from the navigation's switcher. The answer is a page whose
    script goes on at once (a link without it): a form's redirect to another host would be stopped
    by this page's Content-Security-Policy form-action, a navigation by script or link is not."""
    try:
        switch = workspace_switch(
            user=request.user,  # type: ignore[arg-type]
            source=request.tenant,  # type: ignore[attr-defined]
            subdomain=request.POST.get("workspace", "").strip().lower(),
            session=request.session,
        )
    except ApplicationError as exc:
        raise Http404(exc.message) from None
    return render(request, "tenants/switch/onward.html", {"switch": switch})


@never_cache
@require_GET
def workspace_enter_page(request: HttpRequest, token: str) -> HttpResponse:
    """The hand-off's landing on the workspace's host: a session, then the workspace; anything else
    is the login page with a word on why. Someone already signed in here as a member stays so."""
    tenant = request.tenant  # type: ignore[attr-defined]
    if request.user.is_authenticated and membership_get(user=request.user, tenant=tenant) is not None:
        return redirect("/")
    try:
        handoff = workspace_handoff_redeem(tenant=tenant, token=token, request=request)
    except ApplicationError as refusal:
        messages.info(request, refusal.message)
        return redirect("/login/")
    request.audit_login_changes = handoff.audit_changes  # type: ignore[attr-defined]
    login(request, handoff.user, backend=_SESSION_BACKEND)
    return redirect("/")
