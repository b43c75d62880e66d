"""URL patterns both hosts share: readiness, auth, and the JSON error handlers. Each host serves the
OpenAPI schema of its own URLs (``schema_view``). (Liveness, ``/healthz``, is answered by middleware
before any tenant lookup.)"""

from typing import Any

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from config.health import readyz
from tenants.api import PasswordChangeApi, PasswordResetApi, PasswordResetConfirmApi, ThrottledLoginView
from tenants.mfa.api import MfaLoginApi


def schema_view(urlconf: str) -> Any:
    """``/api/schema/``: the OpenAPI document of the host's own URL conf, not the default one."""
    return path("api/schema/", SpectacularAPIView.as_view(urlconf=urlconf), name="schema")


common_urlpatterns = [
    path("readyz", readyz, name="readyz"),
    path("api/auth/login/", ThrottledLoginView.as_view(), name="rest_login"),
    path("api/auth/login/mfa/", MfaLoginApi.as_view(), name="rest_login_mfa"),
    path("api/auth/password/reset/", PasswordResetApi.as_view(), name="rest_password_reset"),
    path("api/auth/password/reset/confirm/", PasswordResetConfirmApi.as_view(), name="rest_password_reset_confirm"),
    path("api/auth/password/change/", PasswordChangeApi.as_view(), name="rest_password_change"),
    path("api/auth/", include("dj_rest_auth.urls")),
]

handler400 = "config.views.bad_request"
handler403 = "config.views.permission_denied"
handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
