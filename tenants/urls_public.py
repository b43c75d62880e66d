"""The public host's account API and pages (included by config.urls_public)."""

from django.urls import path

from tenants import views
from tenants.api import WorkspacesFindApi

urlpatterns = [
    path("api/workspaces/find/", WorkspacesFindApi.as_view(), name="workspaces-find-api"),
    path("login/", views.workspaces_find_page, name="workspaces-find"),
    *views.password_reset_urlpatterns,
]
