"""The demo tenant's sample documents (config/demo_documents/), so a first look at Strata has something to search."""

from __future__ import annotations

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import tenant_context

from ai.access import reader_of
from ai.models import Document
from ai.services.documents import document_create
from core.models import User
from tenants.models import Tenant

SAMPLE_DOCUMENTS = Path(__file__).resolve().parent / "demo_documents"


def demo_documents_seed(*, tenant: Tenant, user: User) -> list[Document]:
    """Upload the sample files into ``tenant``'s default collection as ``user``: uploaded as files,
    as a person would, so they take their titles from their names and are indexed by the job worker."""
    with tenant_context(tenant):
        reader = reader_of(tenant=tenant, user=user)
        return [
            document_create(
                user=user,
                reader=reader,
                upload=SimpleUploadedFile(path.name, path.read_bytes(), content_type="text/markdown"),
            )
            for path in sorted(SAMPLE_DOCUMENTS.glob("*.md"))
        ]
