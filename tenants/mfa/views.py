"""Two-factor pages on a tenant host: the code step of a sign-in (login page and tenant admin), and
the person's security page (set up, recovery codes, turn off; the owner's policy toggle)."""

from __future__ import annotations

import base64
from typing import Any, cast
from urllib.parse import quote

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME, authenticate, login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.decorators import member_required
from tenants.mfa.services import (
    TotpEnrolment,
    authenticators_list,
    mfa_disable,
    mfa_enabled,
    mfa_pending_issue,
    mfa_pending_user,
    mfa_policy_get,
    mfa_policy_set,
    recovery_codes_regenerate,
    totp_enrol_confirm,
    totp_enrol_resume,
    totp_enrol_start,
)
from tenants.models import Membership

SECURITY_PATH = "/account/security/"


# --- The sign-in's second step -----------------------------------------------------------------


def _login_path(next_url: str) -> str:
    """Where "start again" goes: the admin's login for the admin, else the host's login page."""
    return "/admin/login/" if next_url.startswith("/admin/") else "/login/"


def _challenge(
    request: HttpRequest, *, mfa_token: str, next_url: str, error: str = "", status: int = 200
) -> HttpResponse:
    context = {"mfa_token": mfa_token, "next": next_url, "error": error, "restart": _login_path(next_url)}
    response = render(request, "tenants/mfa_challenge.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def mfa_challenge_for(request: HttpRequest, *, user: Any, next_url: str) -> HttpResponse | None:
    """The code form, for a person with two-factor sign-in on whose password was right (a login, or an
    invitation accepted with the password); None: sign them in now."""
    if not mfa_enabled(user=user):
        return None
    token = mfa_pending_issue(user=user, tenant=getattr(request, "tenant", None))
    return _challenge(request, mfa_token=token, next_url=next_url)


class MfaLoginMixin:
    """For a Django ``LoginView``: a person with two-factor sign-in on gets the code form instead
    of a session; the session starts only once the code is right (``mfa_login_page``)."""

    request: HttpRequest

    def form_valid(self, form: Any) -> HttpResponse:
        challenge = mfa_challenge_for(self.request, user=form.get_user(), next_url=self.get_success_url())  # type: ignore[attr-defined]
        return challenge or super().form_valid(form)  # type: ignore[misc]


class MfaLoginView(MfaLoginMixin, auth_views.LoginView):
    """Django's login view with the code step (the admins' logins)."""


def mfa_admin_login(site: AdminSite, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """``AdminSite.login`` as Django writes it, with the code step after the password: the tenant
    admin's and the operators' admin's login."""
    index = reverse("admin:index", current_app=site.name)
    if request.method == "GET" and site.has_permission(request):
        return HttpResponseRedirect(index)
    context = {
        **site.each_context(request),
        "title": "Log in",
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
    }
    if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
        context[REDIRECT_FIELD_NAME] = index
    context.update(extra_context or {})
    request.current_app = site.name
    view = MfaLoginView.as_view(
        extra_context=context,
        authentication_form=site.login_form or AdminAuthenticationForm,
        template_name=site.login_template or "admin/login.html",
    )
    return cast(HttpResponse, view(request))


def _safe_next(request: HttpRequest, value: str) -> str:
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return "/"


@sensitive_post_parameters("code", "mfa_token")
@never_cache
@require_http_methods(["GET", "POST"])
def mfa_login_page(request: HttpRequest) -> HttpResponse:
    """``POST {mfa_token, code, next}``: a TOTP or recovery code finishes the sign-in. A wrong code
    counts as a failed login (django-axes; its middleware answers 429 once locked out)."""
    if request.method == "GET":
        return redirect(_login_path(request.GET.get("next", "")))
    token = request.POST.get("mfa_token", "")
    next_url = _safe_next(request, request.POST.get("next", ""))
    try:
        pending = mfa_pending_user(mfa_token=token, tenant=getattr(request, "tenant", None))
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(f"{_login_path(next_url)}?next={quote(next_url)}")
    user = authenticate(request, username=pending.email, mfa_token=token, mfa_passcode=request.POST.get("code", ""))
    if user is None:
        return _challenge(request, mfa_token=token, next_url=next_url, error="That code is not right.", status=400)
    login(request, user)
    return redirect(next_url)


# --- The security page -------------------------------------------------------------------------


def _qr_data_uri(enrolment: TotpEnrolment) -> str:
    # An <img> with a data: URI: the page's Content-Security-Policy allows those, not inline SVG styles.
    return "data:image/svg+xml;base64," + base64.b64encode(enrolment.qr_svg.encode()).decode()


def _page(request: HttpRequest, *, status: int = 200, **extra: Any) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    membership: Membership = request.membership  # type: ignore[attr-defined]
    context = {
        "page": "account",
        "membership": membership,
        "enabled": mfa_enabled(user=user),
        "authenticators": authenticators_list(user=user),
        "policy": mfa_policy_get(tenant=request.tenant),  # type: ignore[attr-defined]
        "is_owner": membership.role == Membership.Role.OWNER,
        "required_notice": request.GET.get("required") == "1",
        "next_url": _safe_next(request, request.POST.get("next") or request.GET.get("next", "")),
        **extra,
    }
    response = render(request, "tenants/security.html", context, status=status)
    response["Cache-Control"] = "no-store"  # secrets and recovery codes are never cached
    return response


def _enrolment_context(enrolment: TotpEnrolment) -> dict[str, Any]:
    secret_groups = " ".join(enrolment.secret[i : i + 4] for i in range(0, len(enrolment.secret), 4))
    return {"enrolment": enrolment, "qr": _qr_data_uri(enrolment), "secret_groups": secret_groups}


@sensitive_post_parameters("code", "password")
@never_cache
@member_required
def security_page(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request)
    user: User = request.user  # type: ignore[assignment]
    tenant = request.tenant  # type: ignore[attr-defined]
    action = request.POST.get("action")
    code, password = request.POST.get("code", ""), request.POST.get("password", "")
    try:
        if action == "start":
            return _page(request, **_enrolment_context(totp_enrol_start(user=user)))
        if action == "confirm":
            token = request.POST.get("enrolment_token", "")
            try:
                codes = totp_enrol_confirm(user=user, enrolment_token=token, code=code, tenant=tenant, request=request)
            except ApplicationError as exc:
                if exc.code != "mfa_code_invalid":
                    raise
                # Same secret again: the app already holds it.
                enrolment = totp_enrol_resume(user=user, enrolment_token=token)
                return _page(request, status=400, error=exc.message, **_enrolment_context(enrolment))
            messages.success(request, "Two-factor sign-in is on.")
            return _page(request, recovery_codes=codes)
        if action == "recovery_codes":
            codes = recovery_codes_regenerate(user=user, password=password, code=code)
            messages.success(request, "New recovery codes made; the old ones no longer work.")
            return _page(request, recovery_codes=codes)
        if action == "disable":
            mfa_disable(user=user, tenant=tenant, password=password, code=code, request=request)
            messages.success(request, "Two-factor sign-in is off.")
            return redirect(SECURITY_PATH)
        if action == "policy":
            required = request.POST.get("required") == "on"
            mfa_policy_set(tenant=tenant, actor=user, required=required, request=request)
            messages.success(
                request,
                "Two-factor sign-in is now required here." if required else "Two-factor sign-in is optional here.",
            )
            return redirect(SECURITY_PATH)
        raise ApplicationError("Unknown action.")
    except ApplicationError as exc:
        return _page(request, status=exc.status, error=exc.message)
