"""The MFA policy app (label ``tenant_mfa``: allauth's MFA app already has the label ``mfa``)."""

from django.apps import AppConfig


class TenantMfaConfig(AppConfig):
    name = "tenants.mfa"
    label = "tenant_mfa"
    verbose_name = "Two-factor sign-in"
