"""A tenant host's switcher URLs (included by tenants.urls_tenant)."""

from django.urls import path

from tenants.switch.api import WorkspacesApi
from tenants.switch.views import workspace_enter_page, workspace_switch_page

urlpatterns = [
    path("api/workspaces/", WorkspacesApi.as_view(), name="workspaces-api"),
    path("workspaces/switch/", workspace_switch_page, name="workspace-switch"),
    path("workspaces/enter/<str:token>/", workspace_enter_page, name="workspace-enter"),
]
