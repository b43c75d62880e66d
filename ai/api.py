"""Tenant-host API of the AI app: documents (more endpoints join as the app grows)."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework.routers import DefaultRouter

from ai.models import Document
from ai.serializers import DocumentSerializer
from core.api import TenantModelViewSet


class DocumentViewSet(TenantModelViewSet):
    serializer_class = DocumentSerializer

    def get_queryset(self) -> QuerySet[Document]:
        return Document.objects.select_related("created_by")

    def perform_create(self, serializer: DocumentSerializer) -> None:
        serializer.save(created_by=self.request.user)


router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("documents", DocumentViewSet, basename="document")
