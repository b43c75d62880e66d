"""Tenant-host API of the AI app: documents, search, summaries, conversations and SSE chat."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

from asgiref.sync import async_to_sync
from django.db.models import Count, Prefetch, QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from ai import selectors
from ai.access import Reader, collections_readable, documents_readable, reader_of, scope_validate
from ai.chat.answers import Frames, chat_answer_cancel, chat_answer_follow, chat_answer_open
from ai.chat.conversations import conversations_listed
from ai.chat.services import chat_message_validate, chat_prepare
from ai.models import Collection, Conversation, Document, Message
from ai.serializers import (
    ChatCancelOutputSerializer,
    ChatInputSerializer,
    CollectionInputSerializer,
    CollectionMembersSerializer,
    CollectionSerializer,
    ConversationDetailSerializer,
    ConversationQuerySerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    DocumentCreateSerializer,
    DocumentListSerializer,
    DocumentReplaceSerializer,
    DocumentSerializer,
    DocumentUpdateSerializer,
    DocumentVersionSerializer,
    FeedbackInputSerializer,
    FeedbackSerializer,
    MessageSerializer,
    SearchInputSerializer,
    SearchOutputSerializer,
    SummaryOutputSerializer,
)
from ai.services.collections import (
    collection_create,
    collection_delete,
    collection_grants,
    collection_members,
    collection_update,
)
from ai.services.conversations import conversation_delete, conversation_pin, conversation_rename
from ai.services.documents import (
    document_create,
    document_delete,
    document_ingest_retry,
    document_replace,
    document_update,
    document_versions,
)
from ai.services.feedback import message_feedback_give
from ai.services.summarise import document_summarise
from core.models import User
from core.platform.api import TenantAPIView, TenantGenericViewSet, TenantModelViewSet
from core.platform.exceptions import ApplicationError
from core.platform.json import JSONParser
from core.platform.schema import error_responses
from core.platform.validators import ascii_integer


def _reader(request: Request) -> Reader:
    """Who asks (TenantAPIView has checked they belong here): a person, or an API key's own user."""
    return reader_of(tenant=request.tenant, user=request.user)  # type: ignore[attr-defined]


def _administers(request: Request) -> bool:
    membership = getattr(request, "membership", None)  # None for an API key
    return membership is not None and membership.can_administer


def _admins_only(request: Request) -> None:
    if not _administers(request):
        raise ApplicationError("Only owners and admins may manage collections.", code="permission_denied", status=403)


def _ids_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    value = ascii_integer(raw)
    if value is None or value < 1:
        raise ApplicationError(f"'{name}' must be an id.", code="bad_request")
    return value


class CollectionViewSet(TenantModelViewSet):
    """Collections the asker may read; owners and admins see, create, change and delete all.
    ``DELETE`` of one that holds documents needs ``?move_to=<id>``."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Collection]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema: no asker
            return Collection.objects.none()
        # Counting groups the rows, and a grouped query drops Meta.ordering: order it again, or pages
        # come in whatever order the grouping left (rows missed or repeated between pages).
        return (
            collections_readable(_reader(self.request))
            .annotate(document_count=Count("documents"))
            .order_by(*(Collection._meta.ordering or ()))
        )

    def get_serializer_class(self) -> type:
        return CollectionSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        context = dict(super().get_serializer_context())
        context["grants"] = collection_grants(tenant=self.request.tenant)  # type: ignore[attr-defined]
        return context

    @extend_schema(request=CollectionInputSerializer, responses={201: CollectionSerializer, **error_responses(403)})
    def create(self, request: Request) -> Response:
        _admins_only(request)
        data = CollectionInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant, user = _asker(request)
        collection = collection_create(tenant=tenant, user=user, **data.validated_data)
        return Response(self._shown(collection.pk), status=status.HTTP_201_CREATED)

    @extend_schema(request=CollectionInputSerializer(partial=True), responses={200: CollectionSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        collection = self.get_object()
        _admins_only(request)
        data = CollectionInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        collection_update(tenant=request.tenant, collection=collection, **data.validated_data)  # type: ignore[attr-defined]
        return Response(self._shown(collection.pk))

    @extend_schema(
        parameters=[OpenApiParameter("move_to", int, description="Where its documents go (required if it has any).")],
        responses={204: None, **error_responses(400, 403, 404, 409)},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        collection = self.get_object()
        _admins_only(request)
        move_to_id = _ids_param(request, "move_to")
        move_to = None
        if move_to_id is not None:
            move_to = self.get_queryset().filter(id=move_to_id).first()
            if move_to is None:
                raise ApplicationError("No such collection to move the documents to.", code="not_found", status=404)
        collection_delete(tenant=request.tenant, collection=collection, move_to=move_to, request=request)  # type: ignore[attr-defined]
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: CollectionMembersSerializer})
    @action(detail=True, methods=["get"])
    def members(self, request: Request, pk: str | None = None) -> Response:
        """The people and API keys named in this collection (change them with PATCH ``member_ids``, ``api_key_ids``)."""
        collection = self.get_object()
        named = collection_members(tenant=request.tenant, collection=collection)  # type: ignore[attr-defined]
        return Response(CollectionMembersSerializer(named).data)

    def _shown(self, pk: int) -> dict[str, Any]:
        return dict(self.get_serializer(self.get_queryset().get(pk=pk)).data)


class DocumentViewSet(TenantModelViewSet):
    """Documents the asker may read (``?collection_id=`` narrows the list); their owners, and
    owners and admins, change them."""

    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Document]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema: no asker
            return Document.objects.none()
        reader = _reader(self.request)
        if self.action == "list":
            collection_id = _ids_param(self.request, "collection_id")
            if collection_id is not None:
                reader = scope_validate(reader=reader, collection_ids=[collection_id], document_ids=None)
            return selectors.documents_list(reader=reader)
        return documents_readable(reader).select_related("created_by")

    def get_serializer_class(self) -> type:
        return DocumentListSerializer if self.action == "list" else DocumentSerializer

    @extend_schema(
        request=DocumentCreateSerializer, responses={201: DocumentSerializer, **error_responses(403, 404, 413)}
    )
    def create(self, request: Request) -> Response:
        data = DocumentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        document = document_create(
            user=request.user,
            reader=_reader(request),
            title=data.validated_data["title"],
            content=data.validated_data["content"],
            upload=data.validated_data.get("file"),
            collection_id=data.validated_data.get("collection_id"),
        )
        return Response(DocumentSerializer(document).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DocumentUpdateSerializer, responses={200: DocumentSerializer, **error_responses(403, 413)})
    def update(self, request: Request, pk: str | None = None, partial: bool = False) -> Response:
        document = self.get_object()
        data = DocumentUpdateSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        document = document_update(reader=_reader(request), document=document, **data.validated_data)
        return Response(DocumentSerializer(document).data)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self.update(request, pk, partial=True)

    def perform_destroy(self, instance: Document) -> None:
        document_delete(
            reader=_reader(self.request),
            tenant=self.request.tenant,  # type: ignore[attr-defined]
            document=instance,
            request=self.request,
        )

    @extend_schema(request=None, responses={202: DocumentSerializer, **error_responses(409)})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Queue a failed (or stuck) document's ingestion again."""
        document = document_ingest_retry(document=self.get_object())
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=DocumentReplaceSerializer, responses={202: DocumentSerializer, **error_responses(403, 404, 413)}
    )
    @action(detail=True, methods=["post"])
    def replace(self, request: Request, pk: str | None = None) -> Response:
        """Replace the text with a new version (a file, or ``content``); the current one is kept
        (``versions``) and the new one is indexed in the background."""
        data = DocumentReplaceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        document = document_replace(
            user=_asker(request)[1],
            reader=_reader(request),
            document=self.get_object(),
            title=data.validated_data["title"],
            content=data.validated_data["content"],
            upload=data.validated_data.get("file"),
        )
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: DocumentVersionSerializer(many=True)})
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str | None = None) -> Response:
        """The earlier versions, newest first (the current one is the document itself)."""
        versions = document_versions(document=self.get_object())
        return Response(DocumentVersionSerializer(versions, many=True).data)

    @extend_schema(request=None, responses={200: SummaryOutputSerializer, **error_responses(402, 409, 429, 502, 503)})
    @action(detail=True, methods=["post"])
    def summarise(self, request: Request, pk: str | None = None) -> Response:
        result = document_summarise(user=request.user, document=self.get_object())
        return Response(SummaryOutputSerializer(result).data)


class SearchApi(TenantAPIView):
    read_only_post = True  # a search reads: a read-scoped API key may call it

    @extend_schema(
        request=SearchInputSerializer, responses={200: SearchOutputSerializer, **error_responses(404, 502, 503)}
    )
    def post(self, request: Request) -> Response:
        data = SearchInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        arguments = dict(data.validated_data)
        reader = scope_validate(
            reader=_reader(request),
            collection_ids=arguments.pop("collection_ids", None),
            document_ids=arguments.pop("document_ids", None),
        )
        hits = selectors.documents_search(reader=reader, **arguments)
        output = {"results": hits, "documents": selectors.hits_by_document(hits)}
        return Response(SearchOutputSerializer(output).data)


class ConversationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, TenantGenericViewSet
):
    """A member's own conversations, pinned first (``?q=`` searches titles and messages); other
    members' are invisible (404). PATCH renames or pins, DELETE deletes."""

    def get_queryset(self) -> QuerySet[Conversation]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema: no asker
            return Conversation.objects.none()
        query = ""
        if self.action == "list":
            params = ConversationQuerySerializer(data=self.request.query_params)
            params.is_valid(raise_exception=True)  # text PostgreSQL cannot store is a 400, not a 500
            query = params.validated_data.get("q", "")
        queryset = conversations_listed(user_id=cast(int, self.request.user.pk), query=query)
        if self.action == "retrieve":
            queryset = queryset.prefetch_related(
                Prefetch("messages", queryset=Message.objects.filter(superseded=False).order_by("created", "id"))
            )
        return queryset

    def get_serializer_class(self) -> type:
        return ConversationDetailSerializer if self.action == "retrieve" else ConversationSerializer

    @extend_schema(
        parameters=[ConversationQuerySerializer],
        responses={200: ConversationSerializer(many=True), **error_responses(400)},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def perform_create(self, serializer: ConversationSerializer) -> None:
        serializer.save(user=self.request.user)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        conversation = self.get_object()
        shown = selectors.messages_readable(messages=list(conversation.messages.all()), reader=_reader(request))
        return Response(
            {**ConversationSerializer(conversation).data, "messages": MessageSerializer(shown, many=True).data}
        )

    @extend_schema(
        request=FeedbackInputSerializer, responses={200: FeedbackSerializer, **error_responses(400, 404, 409)}
    )
    @action(detail=True, methods=["post"], url_path=r"messages/(?P<message_id>[0-9]+)/feedback")
    def feedback(self, request: Request, pk: str | None = None, message_id: str | None = None) -> Response:
        """Thumbs up or down (and a comment) on one answer of the conversation, by the person who asked."""
        data = FeedbackInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        action = message_feedback_give(
            conversation=self.get_object(),
            message_id=int(message_id or 0),
            user=request.user,  # type: ignore[arg-type]
            rating=data.validated_data["rating"],
            comment=data.validated_data["comment"],
        )
        output = {"message_id": int(message_id or 0), "rating": action.feedback, "comment": action.feedback_comment}
        return Response(FeedbackSerializer(output).data)

    @extend_schema(request=ConversationUpdateSerializer, responses={200: ConversationSerializer})
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = ConversationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = self.get_object()
        if "title" in data.validated_data:
            conversation = conversation_rename(conversation=conversation, title=data.validated_data["title"])
        if "pinned" in data.validated_data:
            conversation = conversation_pin(conversation=conversation, pinned=data.validated_data["pinned"])
        return Response(ConversationSerializer(conversation).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        conversation_delete(conversation=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept ``Accept: text/event-stream`` (what SSE clients send); the
    stream itself is written by the view, and errors are JSON (see ChatSseApi.finalize_response)."""

    media_type = "text/event-stream"
    format = "sse"

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        return JSONRenderer().render(data)


SSE_RESPONSE = OpenApiResponse(
    {
        "type": "object",
        "description": "One server-sent event per chat frame.",
        "properties": {
            "event": {"type": "string", "enum": ["start", "token", "done", "error"]},
            "data": {"type": "string", "description": "The frame as JSON, as the WebSocket sends it."},
            "id": {"type": "string"},
        },
        "required": ["event", "data"],
    },
    description="Server-sent events: start, token..., then done or error (the WebSocket's frames).",
)


class _EventStreamApi(TenantAPIView):
    """A view that answers ``text/event-stream``; its refusals are JSON errors, also for a client
    that asked for an event stream."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response) and response.status_code >= 400:
            response.accepted_renderer = JSONRenderer()
            response.accepted_media_type = "application/json"
        return response


class ChatSseApi(_EventStreamApi):
    """POST a message, receive the chat frames as ``text/event-stream``; refusals are plain 4xx."""

    @extend_schema(
        request=ChatInputSerializer,
        responses={(200, "text/event-stream"): SSE_RESPONSE, **error_responses(402, 404, 413, 429, 502, 503)},
    )
    def post(self, request: Request) -> StreamingHttpResponse:
        tenant, user = _asker(request)
        turn = chat_prepare(tenant=tenant, user=user, question=chat_message_validate(request.data))
        # The answer runs in a task on the server's event loop, not in this response: it outlives it.
        return _sse(async_to_sync(chat_answer_open)(turn=turn))


class ChatStreamApi(_EventStreamApi):
    """Resume one of your answers as ``text/event-stream``: the events after ``Last-Event-ID``
    (or ``?after=``) replayed, then live ones until done; 404 ``not_found`` once its log expired."""

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("after", int, description="The seq of the last event received.")],
        responses={(200, "text/event-stream"): SSE_RESPONSE, **error_responses(400, 404)},
    )
    def get(self, request: Request, message_id: int) -> StreamingHttpResponse:
        tenant, user = _asker(request)
        frames = async_to_sync(chat_answer_follow)(
            tenant=tenant, user=user, message_id=message_id, after=_last_event_id(request)
        )
        return _sse(frames)


class ChatCancelApi(TenantAPIView):
    """Stop one of your answers now (saved as interrupted with its tokens); ``cancelled`` is false
    if it had already ended."""

    @extend_schema(request=None, responses={200: ChatCancelOutputSerializer, **error_responses(404)})
    def post(self, request: Request, message_id: int) -> Response:
        tenant, user = _asker(request)
        cancelled = async_to_sync(chat_answer_cancel)(tenant=tenant, user=user, message_id=message_id)
        return Response(ChatCancelOutputSerializer({"message_id": message_id, "cancelled": cancelled}).data)


def _asker(request: Request) -> tuple[Any, User]:
    """The host's tenant and the member asking (TenantAPIView has checked both)."""
    return request.tenant, cast(User, request.user)  # type: ignore[attr-defined]


def _last_event_id(request: Request) -> int:
    after = ascii_integer(request.headers.get("Last-Event-ID") or request.query_params.get("after", "0"))
    if after is None:
        raise ApplicationError("Last-Event-ID must be the seq of the last event received.", code="bad_request")
    return after


def _sse(frames: Frames) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_events(frames), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx must pass tokens through as they come
    return response


async def _events(frames: Frames) -> AsyncGenerator[bytes, None]:
    """One server-sent event per frame; the frames of one batch in one write (tokens that came
    together go out together: a write and its trip through the server each cost CPU)."""
    try:
        async for batch in frames:
            yield "".join(
                f"id: {frame['seq']}\nevent: {frame['type']}\ndata: {json.dumps(frame)}\n\n" for frame in batch
            ).encode()
    finally:
        await frames.aclose()


router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("collections", CollectionViewSet, basename="collection")
router.register("documents", DocumentViewSet, basename="document")
router.register("conversations", ConversationViewSet, basename="conversation")
