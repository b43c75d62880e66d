"""The link that logs a new organisation's owner in on its own host right after signup, once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.utils.encoding import force_bytes, force_str
from django.utils.http import base36_to_int, urlsafe_base64_decode, urlsafe_base64_encode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.models import User
from tenants.mfa.services import mfa_enabled
from tenants.models import Tenant
from tenants.selectors import membership_get

# Signup answers with the link and its page follows it at once: minutes are plenty.
WELCOME_MAX_AGE = 600


class _WelcomeTokens(PasswordResetTokenGenerator):
    """Django's reset token (spent when last_login or the password changes, so one login uses
    it up), under a salt of its own and bound to one workspace: no reset link, and no other host."""

    key_salt = "strata.tenants.welcome"

    def __init__(self, tenant: Tenant) -> None:
        super().__init__()
        self.tenant_id = tenant.pk

    def _make_hash_value(self, user: Any, timestamp: int) -> str:
        return f"{super()._make_hash_value(user, timestamp)}:{self.tenant_id}"

    def check_token(self, user: Any, token: Any) -> bool:
        if not super().check_token(user, token):
            return False
        issued = base36_to_int(str(token).split("-")[0])
        return self._num_seconds(self._now()) - issued <= WELCOME_MAX_AGE


def welcome_url(*, user: User, tenant: Tenant) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"{tenant.url}login/welcome/{uid}/{_WelcomeTokens(tenant).make_token(user)}/"


@never_cache
@require_GET
def welcome_page(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """A valid link starts a session and opens the workspace; anything else is the login page
    (so is an account with two-factor sign-in on: its code is asked there)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    try:
        user = User.objects.filter(pk=int(force_str(urlsafe_base64_decode(uidb64)))).first()
    except (TypeError, ValueError, OverflowError):
        user = None
    if (
        user is None
        or not user.is_active
        or membership_get(user=user, tenant=tenant) is None
        or not _WelcomeTokens(tenant).check_token(user, token)
        or mfa_enabled(user=user)
    ):
        return redirect("/login/")
    login(request, user, backend="tenants.backends.TenantMemberBackend")
    return redirect("/")


urlpatterns = [path("login/welcome/<str:uidb64>/<str:token>/", welcome_page, name="signup-welcome")]
