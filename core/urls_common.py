"""URL patterns both hosts share: health, schema, auth, and the JSON error handlers."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from core.auth import ThrottledLoginView
from core.health import healthz

common_urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/auth/login/", ThrottledLoginView.as_view(), name="rest_login"),
    path("api/auth/", include("dj_rest_auth.urls")),
]

handler400 = "core.views.bad_request"
handler403 = "core.views.permission_denied"
handler404 = "core.views.not_found"
handler500 = "core.views.server_error"
