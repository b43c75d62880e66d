"""/scim/v2/ on a tenant host: django-scim2's routes (namespace "scim", which its adapters reverse)."""

from django.urls import re_path
from django_scim import views as scim

from tenants.scim import views

app_name = "scim"

urlpatterns = [
    re_path(r"^$", scim.SCIMView.as_view(implemented=False), name="root"),
    re_path(r"^\.search$", scim.SearchView.as_view(implemented=False), name="search"),
    re_path(r"^Users/\.search$", views.ScimUserSearchView.as_view(), name="users-search"),
    re_path(r"^Users(?:/(?P<uuid>[^/]+))?$", views.ScimUsersView.as_view(), name="users"),
    re_path(r"^Groups/\.search$", views.ScimGroupSearchView.as_view(), name="groups-search"),
    re_path(r"^Groups(?:/(?P<uuid>[^/]+))?$", views.ScimGroupsView.as_view(), name="groups"),
    re_path(r"^Me$", scim.SCIMView.as_view(implemented=False), name="me"),
    re_path(r"^ServiceProviderConfig$", scim.ServiceProviderConfigView.as_view(), name="service-provider-config"),
    re_path(r"^ResourceTypes(?:/(?P<uuid>[^/]+))?$", scim.ResourceTypesView.as_view(), name="resource-types"),
    re_path(r"^Schemas(?:/(?P<uuid>[^/]+))?$", scim.SchemasView.as_view(), name="schemas"),
    re_path(r"^Bulk$", scim.SCIMView.as_view(implemented=False), name="bulk"),
]
