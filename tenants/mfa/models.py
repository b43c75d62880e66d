"""A tenant's two-factor policy. The authenticators themselves are allauth's (``allauth.mfa.models``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tenants.models import Tenant, TenantRowQuerySet


class MfaPolicy(models.Model):
    """Lives in public, one row per tenant that ever set it (no row: not required)."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="mfa_policy")
    required = models.BooleanField(
        default=False, help_text="Members without two-factor sign-in must set it up before anything else."
    )
    changed = models.DateTimeField(auto_now=True)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        db_table = "tenant_mfa_policy"
        verbose_name = "two-factor policy"
        verbose_name_plural = "two-factor policies"

    def __str__(self) -> str:
        return f"{self.tenant_id}: {'required' if self.required else 'optional'}"
