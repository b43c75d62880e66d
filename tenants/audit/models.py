"""Audit entries (append-only, chained per tenant by hash) and the marks retention leaves behind."""

from __future__ import annotations

import json

from django.db import models


class Action(models.TextChoices):
    """What happened. The value is stable (filters and exports use it); the label is for people."""

    LOGIN = "auth.login", "Signed in"
    LOGIN_FAILED = "auth.login_failed", "Sign-in failed"
    LOGOUT = "auth.logout", "Signed out"
    INVITATION_CREATED = "invitation.created", "Invitation sent"
    INVITATION_ACCEPTED = "invitation.accepted", "Invitation accepted"
    INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
    MEMBER_ADDED = "member.added", "Member added"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    MEMBER_LEFT = "member.left", "Member left"
    OWNERSHIP_TRANSFERRED = "member.ownership_transferred", "Ownership transferred"
    API_KEY_CREATED = "api_key.created", "API key created"
    API_KEY_REVOKED = "api_key.revoked", "API key revoked"
    SSO_CHANGED = "sso.changed", "Single sign-on changed"
    SCIM_CHANGED = "scim.changed", "Provisioning (SCIM) changed"
    SCIM_USER_PROVISIONED = "scim.user_provisioned", "User provisioned (SCIM)"
    SCIM_USER_DEPROVISIONED = "scim.user_deprovisioned", "User deprovisioned (SCIM)"
    MFA_ENABLED = "mfa.enabled", "Two-factor sign-in enabled"
    MFA_DISABLED = "mfa.disabled", "Two-factor sign-in disabled"
    MFA_POLICY_CHANGED = "mfa.policy_changed", "Two-factor policy changed"
    DOCUMENT_DELETED = "document.deleted", "Document deleted"
    COLLECTION_DELETED = "collection.deleted", "Collection deleted"
    PLAN_CHANGED = "billing.plan_changed", "Plan changed"
    SUBSCRIPTION_CHANGED = "billing.subscription_changed", "Subscription changed"
    EXPORT_REQUESTED = "export.requested", "Export requested"
    AUDIT_EXPORTED = "audit.exported", "Audit log exported"
    ACCOUNT_EXPORTED = "account.exported", "Personal data exported"
    ACCOUNT_DELETED = "account.deleted", "Account deleted"
    WORKSPACE_CLOSED = "workspace.closed", "Workspace closed"
    WORKSPACE_RESTORED = "workspace.restored", "Workspace restored"
    WORKSPACE_DELETED = "workspace.deleted", "Workspace deleted"
    TENANT_SUSPENDED = "tenant.suspended", "Workspace suspended"
    TENANT_REACTIVATED = "tenant.reactivated", "Workspace reactivated"
    TENANT_CHANGED = "tenant.changed", "Workspace settings changed"
    DOMAIN_CHANGED = "tenant.domain_changed", "Domain changed"


class ActorType(models.TextChoices):
    USER = "user", "Person"
    KEY = "key", "API key"
    OPERATOR = "operator", "Platform operator"
    # Nobody signed in: a failed sign-in (the label holds the address that was tried), a job.
    ANONYMOUS = "anonymous", "Not signed in"
    SYSTEM = "system", "Strata"


class AuditEntry(models.Model):
    """One thing that happened in a tenant. Lives in ``public`` with the tenant as plain columns (no
    foreign key) so it outlives the tenant's schema and row; the actor is copied for the same reason.

    ``prev_hash`` is the ``hash`` of the tenant's previous entry and ``hash`` covers every column
    below plus ``prev_hash`` (``tenants.audit.services.entry_hash``): editing, inserting or removing
    a row in the middle breaks the chain, which ``manage.py audit_verify`` reports. The database
    refuses UPDATE and DELETE (trigger in migration 0002); retention is the one controlled delete.
    """

    tenant_id = models.BigIntegerField(db_index=False)
    tenant_subdomain = models.CharField(max_length=40)
    at = models.DateTimeField()
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=300, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    changes = models.JSONField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        indexes = [
            # The chain walk, the API's newest-first pages and the cursor all read (tenant, id).
            models.Index(fields=["tenant_id", "id"], name="audit_tenant_id_idx"),
            models.Index(fields=["tenant_id", "action", "id"], name="audit_tenant_action_idx"),
            models.Index(fields=["at"], name="audit_at_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(actor_type__in=[choice.value for choice in ActorType]),
                name="audit_actor_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_subdomain} {self.at:%Y-%m-%d %H:%M} {self.action} by {self.actor_label}"

    @property
    def changes_text(self) -> str:
        return "" if self.changes is None else json.dumps(self.changes, ensure_ascii=False)

    @property
    def action_label(self) -> str:
        try:
            return str(Action(self.action).label)
        except ValueError:
            return self.action


class AuditPrune(models.Model):
    """Where retention cut a tenant's chain: the hash of the last entry it deleted. The next entry's
    ``prev_hash`` must equal the newest mark's, so a pruned prefix still verifies and a prefix removed
    any other way does not. Append-only like the entries."""

    tenant_id = models.BigIntegerField()
    at = models.DateTimeField()
    through_id = models.BigIntegerField()
    through_hash = models.CharField(max_length=64)
    deleted = models.PositiveIntegerField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant_id", "id"], name="audit_prune_tenant_idx")]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id}: {self.deleted} entries through #{self.through_id}"
