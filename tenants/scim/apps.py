"""SCIM app config."""

from django.apps import AppConfig


class ScimConfig(AppConfig):
    name = "tenants.scim"
    label = "scim"
    verbose_name = "Provisioning (SCIM)"
