"""The link that logs a new organisation's owner in on its own host right after signup, once."""

from __future__ import annotations

from django.contrib.auth import login
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.models import User
from tenants.mfa.services import mfa_enabled
from tenants.models import Tenant
from tenants.selectors import membership_get
from tenants.sign_in_tokens import SignInTokens, TokenInvalid

# Signup answers with the link and its page follows it at once: minutes are plenty.
WELCOME_MAX_AGE = 600
_TOKENS = SignInTokens(salt="strata.tenants.welcome", one_time=True)


def welcome_url(*, user: User, tenant: Tenant) -> str:
    return f"{tenant.url}login/welcome/{_TOKENS.issue(user=user, tenant_id=tenant.pk)}/"


@never_cache
@require_GET
def welcome_page(request: HttpRequest, token: str) -> HttpResponse:
    """A valid link starts a session and opens the workspace; anything else is the login page
    (so is an account with two-factor sign-in on: its code is asked there)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    with transaction.atomic():
        try:
            user, _ = _TOKENS.read(token=token, tenant_id=tenant.pk, max_age=WELCOME_MAX_AGE, lock=True)
        except TokenInvalid:
            return redirect("/login/")
        if membership_get(user=user, tenant=tenant) is None or mfa_enabled(user=user):
            return redirect("/login/")
        _TOKENS.spend(user)  # before the session exists: a second use waits for the lock, then differs
    login(request, user, backend="tenants.backends.TenantMemberBackend")
    return redirect("/")


urlpatterns = [path("login/welcome/<str:token>/", welcome_page, name="signup-welcome")]
