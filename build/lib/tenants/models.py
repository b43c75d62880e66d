"""Organisations (one PostgreSQL schema each), their host names and their members."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Tenant(TenantMixin):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PENDING_PAYMENT = "pending_payment", "Pending payment"
        SUSPENDED = "suspended", "Suspended"

    name = models.CharField(max_length=120)
    subdomain = models.CharField(max_length=40, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created = models.DateTimeField(auto_now_add=True)
    suspended_reason = models.CharField(max_length=200, blank=True)

    # The provisioning service creates the schema itself (clone + vector fix-ups) inside its
    # own transaction; django-tenants' implicit create-on-save would run outside that control.
    auto_create_schema = False
    auto_drop_schema = True

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "pending_payment", "suspended"]),
                name="tenant_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.subdomain})"

    @property
    def is_public(self) -> bool:
        return self.schema_name == settings.PUBLIC_SCHEMA_NAME

    @property
    def url(self) -> str:
        return tenant_url(self.subdomain)

    def membership_of(self, user: Any) -> Membership | None:
        """The user's membership here, or None (the tenant API guard asks through the request's tenant)."""
        if not getattr(user, "is_authenticated", False):
            return None
        return Membership.objects.filter(user=user, tenant=self).first()


def tenant_url(subdomain: str) -> str:
    host = f"{subdomain}.{settings.BASE_DOMAIN}"
    port = "" if settings.SITE_SCHEME == "https" or settings.PORT in (80, 443) else f":{settings.PORT}"
    return f"{settings.SITE_SCHEME}://{host}{port}/"


class Domain(DomainMixin):
    pass


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="membership_unique_user_tenant"),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "admin", "member"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant.subdomain} ({self.role})"

    @property
    def can_administer(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)
