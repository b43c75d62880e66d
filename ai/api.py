"""Tenant-host API of the AI app: documents, search, summaries, conversations and SSE chat."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from django.db.models import Prefetch, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from ai import selectors
from ai.models import Conversation, Document, Message
from ai.serializers import (
    ChatInputSerializer,
    ConversationDetailSerializer,
    ConversationRenameSerializer,
    ConversationSerializer,
    DocumentCreateSerializer,
    DocumentListSerializer,
    DocumentSerializer,
    DocumentUpdateSerializer,
    SearchInputSerializer,
    SearchOutputSerializer,
    SummaryOutputSerializer,
)
from ai.services.chat import chat_message_validate, chat_prepare, chat_stream
from ai.services.conversations import conversation_delete, conversation_rename
from ai.services.documents import document_create, document_delete, document_ingest_retry, document_update
from ai.services.summarise import document_summarise
from core.platform.api import TenantAPIView, TenantGenericViewSet, TenantModelViewSet


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

    @extend_schema(request=None, responses={202: DocumentSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Queue a failed (or stuck) document's ingestion again."""
        document = document_ingest_retry(document=self.get_object())
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: SummaryOutputSerializer})
    @action(detail=True, methods=["post"])
    def summarise(self, request: Request, pk: str | None = None) -> Response:
        result = document_summarise(user=request.user, document=self.get_object())
        return Response(SummaryOutputSerializer(result).data)


class SearchApi(TenantAPIView):
    @extend_schema(request=SearchInputSerializer, responses={200: SearchOutputSerializer})
    def post(self, request: Request) -> Response:
        data = SearchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        hits = selectors.documents_search(**data.validated_data)
        output = {"results": hits, "documents": selectors.hits_by_document(hits)}
        return Response(SearchOutputSerializer(output).data)


class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantGenericViewSet
):
    """A member's own conversations; other members' are invisible (404). PATCH renames, DELETE deletes."""

    def get_queryset(self) -> QuerySet[Conversation]:
        queryset = selectors.conversations_for(user_id=self.request.user.id)
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("messages", queryset=Message.objects.order_by("created", "id"))
            )
        return queryset

    def get_serializer_class(self) -> type:
        return ConversationDetailSerializer if self.action == "retrieve" else ConversationSerializer

    def perform_create(self, serializer: ConversationSerializer) -> None:
        serializer.save(user=self.request.user)

    @extend_schema(request=ConversationRenameSerializer, responses={200: ConversationSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = ConversationRenameSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = conversation_rename(conversation=self.get_object(), title=data.validated_data["title"])
        return Response(ConversationSerializer(conversation).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        conversation_delete(conversation=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChatSseApi(TenantAPIView):
    """POST a message, receive the chat frames as ``text/event-stream``; refusals are plain 4xx."""

    @extend_schema(request=ChatInputSerializer, responses={(200, "text/event-stream"): str})
    def post(self, request: Request) -> StreamingHttpResponse:
        message, conversation_id = chat_message_validate(request.data)
        turn = chat_prepare(tenant=request.tenant, user=request.user, message=message, conversation_id=conversation_id)
        response = StreamingHttpResponse(_sse(chat_stream(turn=turn)), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx must pass tokens through as they come
        return response


async def _sse(frames: AsyncIterator[dict]) -> AsyncIterator[bytes]:
    try:
        async for frame in frames:
            yield f"event: {frame['type']}\ndata: {json.dumps(frame)}\n\n".encode()
    finally:
        await frames.aclose()


router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("documents", DocumentViewSet, basename="document")
router.register("conversations", ConversationViewSet, basename="conversation")
