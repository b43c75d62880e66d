"""URL patterns both hosts share: readiness, the API schema, auth, and the JSON error handlers.
(Liveness, ``/healthz``, is answered by middleware before any tenant lookup.)"""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from core.project.health import readyz
from tenants.api import ThrottledLoginView

common_urlpatterns = [
    path("readyz", readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/auth/login/", ThrottledLoginView.as_view(), name="rest_login"),
    path("api/auth/", include("dj_rest_auth.urls")),
]

handler400 = "core.project.views.bad_request"
handler403 = "core.project.views.permission_denied"
handler404 = "core.project.views.not_found"
handler500 = "core.project.views.server_error"
