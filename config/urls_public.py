"""URLs of the public host: signup, plans, billing webhooks, the platform operator admin."""

from functools import partial

from django.contrib import admin
from django.urls import include, path

from config.api import SignupApi
from config.urls_common import (  # noqa: F401
    common_urlpatterns,
    handler400,
    handler403,
    handler404,
    handler500,
    schema_view,
)
from config.views import home, signup_page, workspace_go
from tenants.mfa.views import mfa_admin_login

urlpatterns = [
    path("", home, name="home"),
    path("signup/", signup_page, name="signup"),
    path("go/", workspace_go, name="workspace-go"),
    # Before the admin's own: the operators' login asks for the two-factor code too (tenants.mfa).
    path("admin/login/", partial(mfa_admin_login, admin.site), name="operator-admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include("billing.urls_public")),
    path("api/signup/", SignupApi.as_view(), name="signup-api"),
    path("", include("tenants.urls_public")),
    schema_view(__name__),
    *common_urlpatterns,
]
