"""Tenant-schema data: documents and, later, chunks, conversations and agent actions."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Document(models.Model):
    title = models.CharField(max_length=300)
    content = models.TextField()
    # Users live in public; a database-level FK from every tenant schema would stop an
    # operator deleting a user, so the reference is kept without a constraint.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["-created"], name="document_created_idx")]

    def __str__(self) -> str:
        return self.title
