"""Tenant-host API of the AI app: documents, search, summaries."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from ai import selectors
from ai.models import Document
from ai.serializers import (
    DocumentCreateSerializer,
    DocumentListSerializer,
    DocumentSerializer,
    DocumentUpdateSerializer,
    SearchInputSerializer,
    SearchOutputSerializer,
    SummaryOutputSerializer,
)
from ai.services.documents import document_create, document_delete, document_update
from core.api import TenantAPIView, TenantModelViewSet


class DocumentViewSet(TenantModelViewSet):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Document]:
        if self.action == "list":
            return selectors.documents_list()
        return Document.objects.select_related("created_by")

    def get_serializer_class(self) -> type:
        return DocumentListSerializer if self.action == "list" else DocumentSerializer

    @extend_schema(request=DocumentCreateSerializer, responses={201: DocumentSerializer})
    def create(self, request: Request) -> Response:
        data = DocumentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        document = document_create(
            user=request.user,
            title=data.validated_data["title"],
            content=data.validated_data["content"],
            upload=data.validated_data.get("file"),
        )
        return Response(DocumentSerializer(document).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DocumentUpdateSerializer, responses={200: DocumentSerializer})
    def update(self, request: Request, pk: str | None = None, partial: bool = False) -> Response:
        document = self.get_object()
        data = DocumentUpdateSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        document = document_update(document=document, **data.validated_data)
        return Response(DocumentSerializer(document).data)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk, partial=True)

    def perform_destroy(self, instance: Document) -> None:
        document_delete(document=instance)

    @extend_schema(request=None, responses={200: SummaryOutputSerializer})
    @action(detail=True, methods=["post"])
    def summarise(self, request: Request, pk: str | None = None) -> Response:
        from ai.services.summarise import document_summarise

        result = document_summarise(user=request.user, document=self.get_object())
        return Response(SummaryOutputSerializer(result).data)


class SearchApi(TenantAPIView):
    @extend_schema(request=SearchInputSerializer, responses={200: SearchOutputSerializer})
    def post(self, request: Request) -> Response:
        data = SearchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        hits = selectors.documents_search(**data.validated_data)
        return Response(SearchOutputSerializer({"results": hits}).data)


router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("documents", DocumentViewSet, basename="document")
