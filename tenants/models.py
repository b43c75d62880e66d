"""Organisations (one PostgreSQL schema each), their host names, their members, the invitations
that bring new members in, and their API keys."""

from __future__ import annotations

from typing import Any, Self, TypeVar

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_tenants.models import DomainMixin, TenantMixin

from core.platform.credentials import TenantCredential

_Row = TypeVar("_Row", bound=models.Model)


class TenantRowQuerySet(models.QuerySet[_Row]):
    """The rows of a public table that belong to one tenant: ``for_tenant`` is the one way services,
    selectors and views scope them (a tenant, or its id where only the id is at hand)."""

    def for_tenant(self, tenant: Tenant | int | models.expressions.OuterRef) -> Self:
        return self.filter(tenant=tenant)


class Tenant(TenantMixin):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PENDING_PAYMENT = "pending_payment", "Pending payment"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    name = models.CharField(max_length=120)
    subdomain = models.CharField(max_length=40, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created = models.DateTimeField(auto_now_add=True)
    suspended_reason = models.CharField(max_length=200, blank=True)
    # A closed tenant (config.lifecycle) keeps its schema until delete_after: an operator can restore it until then.
    closed_at = models.DateTimeField(null=True, blank=True)
    delete_after = models.DateTimeField(
        null=True, blank=True, help_text="A closed workspace can be restored until then; its schema is dropped after."
    )

    # The provisioning service creates the schema itself (clone + vector fix-ups) inside its
    # own transaction; django-tenants' implicit create-on-save would run outside that control.
    auto_create_schema = False
    auto_drop_schema = True

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "pending_payment", "suspended", "closed"]),
                name="tenant_status_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="closed") | models.Q(delete_after__isnull=False),
                name="tenant_closed_has_deadline",
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
        # Read with the user by token authentication (tenants.authentication): used once, for this tenant only.
        read = user.__dict__.pop(MEMBERSHIP_READ_WITH_USER, None)
        if read is not None and read[0] == self.pk:
            return read[1]  # type: ignore[no-any-return]
        return Membership.objects.for_tenant(self).filter(user=user).first()


# The attribute of a user object holding (tenant id, membership or None) read in the same query.
MEMBERSHIP_READ_WITH_USER = "_membership_read_with_user"


def tenant_url(subdomain: str) -> str:
    return _site_url(f"{subdomain}.{settings.BASE_DOMAIN}")


def public_url() -> str:
    """The public site's address (signup, finding one's workspace), with a trailing slash."""
    return _site_url(settings.BASE_DOMAIN)


def _site_url(host: str) -> str:
    port = "" if settings.SITE_SCHEME == "https" or settings.PORT in (80, 443) else f":{settings.PORT}"
    return f"{settings.SITE_SCHEME}://{host}{port}/"


class Domain(DomainMixin):
    objects = TenantRowQuerySet.as_manager()


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    objects = TenantRowQuerySet.as_manager()

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

    @property
    def is_owner(self) -> bool:
        return self.role == self.Role.OWNER


class Invitation(models.Model):
    """An e-mail invited to join a tenant with a role. The link's token exists only in the e-mail:
    the job that sends it makes a new one and keeps its SHA-256 (a resend makes the old link stale)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, blank=True, editable=False)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [
            # One open invitation per address and tenant; used and revoked ones stay as history.
            models.UniqueConstraint(
                fields=["tenant", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_open_per_email",
            ),
            models.UniqueConstraint(
                fields=["token_hash"], condition=~models.Q(token_hash=""), name="invitation_token_hash_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "admin", "member"]), name="invitation_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.tenant_id} ({self.role})"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires <= timezone.now():
            return "expired"
        return "pending"

    @property
    def is_open(self) -> bool:
        return self.status == "pending"


class ApiKey(TenantCredential, models.Model):
    """A tenant's key for programs: ``<prefix>.<secret>``, shown once, stored as a SHA-512 hash.

    Each key acts through a user row of its own (no password, no membership), so everything a
    program does is attributed to the key (documents, conversations, agent actions, usage) and
    never to the person who created it. Revoked keys stay, so the ledger keeps its attribution.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Read and write"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=5, choices=Scope.choices, default=Scope.READ)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=200, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_key", editable=False
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    objects = TenantRowQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(condition=models.Q(scope__in=["read", "write"]), name="api_key_scope_valid"),
        ]
        indexes = [models.Index(fields=["tenant", "created"], name="api_key_tenant_created_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def allows_write(self) -> bool:
        return self.scope == self.Scope.WRITE
