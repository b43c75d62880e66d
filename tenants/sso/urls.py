"""SSO URLs of a tenant host."""

from django.urls import include, path

from tenants.sso import views
from tenants.sso.api import SsoConfigApi

urlpatterns = [
    path("api/sso/", SsoConfigApi.as_view(), name="sso-config-api"),
    path("sso/login/", views.sso_login, name="sso-login"),
    path("sso/callback/", views.sso_callback, name="sso-callback"),
    path("sso/test/", views.sso_test, name="sso-test"),
    path("settings/sso/", views.sso_settings_page, name="sso-settings-page"),
    path("", include("tenants.sso.saml_urls")),
]
