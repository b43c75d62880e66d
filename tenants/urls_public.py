"""The public host's account API and pages (included by config.urls_public)."""

from django.urls import path

from tenants import views
from tenants.api import WorkspacesFindApi
from tenants.mfa import views as mfa_views

urlpatterns = [
    path("api/workspaces/find/", WorkspacesFindApi.as_view(), name="workspaces-find-api"),
    path("login/", views.workspaces_find_page, name="workspaces-find"),
    path("login/mfa/", mfa_views.mfa_login_page, name="mfa-login"),  # the operators' admin login's code step
    *views.password_reset_urlpatterns,
]
