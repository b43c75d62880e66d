"""A tenant's single sign-on configuration: one identity provider per tenant (OpenID Connect or SAML)."""

from __future__ import annotations

import hashlib

from django.contrib.postgres.fields import ArrayField
from django.db import models

from tenants.models import Membership, Tenant, TenantRowQuerySet
from tenants.sso.fields import EncryptedTextField


class SsoConfig(models.Model):
    """Lives in public (one row per tenant) so sign-in can find it before any schema is entered."""

    class Protocol(models.TextChoices):
        OIDC = "oidc", "OpenID Connect"
        SAML = "saml", "SAML 2.0"

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="sso_config")
    protocol = models.CharField(max_length=4, choices=Protocol.choices)
    # OpenID Connect
    issuer = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    client_secret = EncryptedTextField(blank=True)
    # SAML: the identity provider's metadata, by address or pasted whole
    metadata_url = models.URLField(max_length=500, blank=True)
    metadata_xml = models.TextField(blank=True)
    # Who gets in
    allowed_domains = ArrayField(models.CharField(max_length=253), default=list, blank=True)
    default_role = models.CharField(
        max_length=10,
        choices=[(Membership.Role.MEMBER, "Member"), (Membership.Role.ADMIN, "Admin")],
        default=Membership.Role.MEMBER,
    )
    enforced = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        verbose_name = "SSO configuration"
        constraints = [
            models.CheckConstraint(condition=models.Q(protocol__in=["oidc", "saml"]), name="sso_protocol_valid"),
            # Owners are made by hand, never by a first sign-in.
            models.CheckConstraint(condition=models.Q(default_role__in=["member", "admin"]), name="sso_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.get_protocol_display()} for tenant {self.tenant_id}"

    @property
    def provider_id(self) -> str:
        """allauth's provider id for this tenant: social accounts made here never match elsewhere.

        An OpenID Connect subject is unique only within its issuer, so the issuer is part of it
        too: a new provider's people never sign in as the old one's (they link again by e-mail)."""
        if self.protocol == self.Protocol.OIDC:
            issuer = hashlib.sha256(self.issuer.rstrip("/").encode()).hexdigest()[:12]
            return f"oidc-t{self.tenant_id}-{issuer}"
        # A SAML NameID is unique within its IdP only: the IdP's entity id (kept across a
        # certificate rotation) is part of it too.
        from tenants.sso.saml import SamlMetadataError, saml_metadata_parse

        try:
            entity_id = saml_metadata_parse(xml=self.metadata_xml).entity_id
        except SamlMetadataError:
            entity_id = ""  # a configuration that no longer reads signs nobody in (tenants.sso.saml)
        return f"saml-t{self.tenant_id}-{hashlib.sha256(entity_id.encode()).hexdigest()[:12]}"
