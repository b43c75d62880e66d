"""A tenant's SCIM token, and the people and groups its identity provider has provisioned."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower, Upper

from tenants.models import Membership, Tenant, TenantRowQuerySet


def _scim_id() -> str:
    return str(uuid.uuid4())


class ScimToken(models.Model):
    """The one bearer token of a tenant's identity provider: ``<prefix>.<secret>``, shown once, only
    its SHA-512 kept. A new one replaces the old at once (the row is rewritten); revoking deletes it."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="scim_token")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=200, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField()
    last_used = models.DateTimeField(null=True, blank=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        verbose_name = "SCIM token"

    def __str__(self) -> str:
        return f"SCIM token {self.prefix} of tenant {self.tenant_id}"


class ScimUser(models.Model):
    """A person as one tenant's identity provider knows them: the SCIM User resource.

    The account (``user``) is global and shared with other tenants, so what the provider sends
    (userName, names, e-mails) is kept here and never written to the account after it is made.
    ``active`` false means the person's membership is gone; ``role`` is what it comes back with.
    """

    scim_id = models.CharField(max_length=36, unique=True, default=_scim_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scim_users")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scim_identities")
    user_name = models.CharField(max_length=254)
    external_id = models.CharField(max_length=254, blank=True)
    given_name = models.CharField(max_length=150, blank=True)
    family_name = models.CharField(max_length=150, blank=True)
    display_name = models.CharField(max_length=254, blank=True)
    email = models.EmailField()
    active = models.BooleanField(default=True)
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)
    last_modified = models.DateTimeField(auto_now=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        verbose_name = "SCIM user"
        constraints = [
            # userName is case-insensitive (RFC 7643 4.1.1) and unique within the tenant.
            models.UniqueConstraint("tenant", Upper("user_name"), name="scim_user_unique_user_name"),
            models.UniqueConstraint(fields=["tenant", "user"], name="scim_user_unique_account"),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "admin", "member"]), name="scim_user_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_name} in tenant {self.tenant_id}"


class ScimGroup(models.Model):
    """A group of one tenant's identity provider. Groups named for a role grant it (``ROLE_GROUPS``)."""

    scim_id = models.CharField(max_length=36, unique=True, default=_scim_id, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scim_groups")
    display_name = models.CharField(max_length=254)
    external_id = models.CharField(max_length=254, blank=True)
    members = models.ManyToManyField(ScimUser, related_name="groups", blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_modified = models.DateTimeField(auto_now=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        verbose_name = "SCIM group"
        constraints = [
            models.UniqueConstraint("tenant", Lower("display_name"), name="scim_group_unique_display_name"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} in tenant {self.tenant_id}"
