"""Web pages of a tenant host: log in, documents (list, upload, search, one document), chat.

Server-rendered Django templates; htmx (static) swaps fragments of them in place, and every form
also works as a plain POST. The chat page's JavaScript streams answers over the same WebSocket
any client uses. Each view parses input, calls one service or selector, and renders.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from ai import selectors
from ai.access import Reader, collections_readable, documents_changeable, documents_readable, reader_of
from ai.chat.citations import citations_link
from ai.chat.conversations import SEARCH_MAX_CHARS, conversations_listed
from ai.markdown import markdown_html
from ai.models import Collection, Conversation, Document, Message
from ai.services.collections import collection_create, collection_delete, collection_members, collection_update
from ai.services.conversations import conversation_delete, conversation_pin, conversation_rename
from ai.services.documents import document_create, document_delete, document_replace, document_versions
from ai.services.summarise import document_summarise
from core.platform.exceptions import ApplicationError
from core.platform.validators import StorableTextFormMixin, ascii_integer
from tenants.decorators import member_required
from tenants.mfa.views import MfaLoginMixin
from tenants.selectors import api_keys_list, members_list, membership_get
from tenants.sso.services import sso_config_get


class MemberLoginForm(StorableTextFormMixin, AuthenticationForm):
    """Only members of the host's tenant log in here. Non-members are refused by authentication
    itself (tenants.backends); a platform operator who is no member gets the same answer."""

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        tenant = getattr(self.request, "tenant", None)
        if tenant is None or membership_get(user=user, tenant=tenant) is None:
            raise self.get_invalid_login_error()

    def clean(self) -> dict[str, Any]:
        try:
            return super().clean()
        except ApplicationError as refusal:  # a tenant enforcing SSO (tenants.backends): say so
            if refusal.code != "sso_required":
                raise  # server_busy and the like keep their own answer (503 + Retry-After)
            raise forms.ValidationError(refusal.message, code=refusal.code) from None


class LoginView(MfaLoginMixin, auth_views.LoginView):
    """With two-factor sign-in on, a correct password leads to the code form, not a session."""

    template_name = "ai/login.html"
    authentication_form = MemberLoginForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # The "Sign in with SSO" button, when the tenant has a provider.
        return {**super().get_context_data(**kwargs), "sso": sso_config_get(tenant=self.request.tenant)}  # type: ignore[attr-defined]

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "sso_required"):
            response.status_code = 403
        return response


class LogoutView(auth_views.LogoutView):
    next_page = "/login/"


def _is_htmx(request: HttpRequest) -> bool:
    """An htmx request for a fragment (a history restore wants the whole page)."""
    return request.headers.get("HX-Request") == "true" and "HX-History-Restore-Request" not in request.headers


# --- documents ---------------------------------------------------------------------------------


def _reader(request: HttpRequest) -> Reader:
    return reader_of(tenant=request.tenant, user=request.user)  # type: ignore[attr-defined]


def _collection_picked(request: HttpRequest, reader: Reader) -> Collection | None:
    """The collection the Documents page shows (``?collection=<id>``; none: every readable one)."""
    picked = ascii_integer(request.GET.get("collection") or "")
    if picked is None:
        return None
    collection = collections_readable(reader).filter(id=picked).first()
    if collection is None:
        raise Http404("No such collection.")
    return collection


def _document_list_context(request: HttpRequest) -> dict[str, Any]:
    reader = _reader(request)
    collection = _collection_picked(request, reader)
    if collection is not None:
        reader = reader.narrowed(collection_ids=[collection.pk])
    documents = list(selectors.documents_list(reader=reader)[:500])
    changeable = set(
        documents_changeable(_reader(request)).filter(id__in=[d.id for d in documents]).values_list("id", flat=True)
    )
    for document in documents:
        document.changeable = document.id in changeable  # type: ignore[attr-defined]
    return {
        "first_steps": _first_steps(request),
        "documents": documents,
        "any_pending": any(d.status == Document.Status.PENDING for d in documents),
        "collection": collection,
        "collections": list(collections_readable(_reader(request))),
        "administers": _administers(request),
    }


def _first_steps(request: HttpRequest) -> selectors.FirstSteps | None:
    """A new workspace's checklist, until every step is done; then never asked for again this session."""
    if request.session.get("first_steps_done"):
        return None
    steps = selectors.first_steps(reader=_reader(request), tenant=request.tenant, user_id=_user_id(request))  # type: ignore[attr-defined]
    if steps.done:
        request.session["first_steps_done"] = True
        return None
    return steps


def _administers(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.can_administer


@member_required
def documents_page(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:2000]
    context = _document_list_context(request)
    search = _search(query, _reader(request), context["collection"]) if query else None
    if search is not None and _is_htmx(request):
        return render(request, "ai/_search_results.html", search)
    context = {"page": "documents", "accept": _ACCEPTED_FILES, **context, **(search or {})}
    return render(request, "ai/documents.html", context)


def _search(query: str, reader: Reader, collection: Collection | None) -> dict[str, Any]:
    if collection is not None:
        reader = reader.narrowed(collection_ids=[collection.pk])
    try:
        results = selectors.documents_search_grouped(reader=reader, query=query, documents=SEARCH_PAGE_DOCUMENTS)
    except ApplicationError as exc:
        return {"query": query, "search_error": exc.message, "results": []}
    return {"query": query, "results": results}


# Documents a search on the page shows at most (those close enough in meaning), each with its best passages.
SEARCH_PAGE_DOCUMENTS = 10
_ACCEPTED_FILES = ".txt,.md,.markdown,.html,.htm,.pdf,.docx"


@member_required
@require_GET
def document_list_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "ai/_document_list.html", _document_list_context(request))


@member_required
@require_POST
def document_upload(request: HttpRequest) -> HttpResponse:
    upload = request.FILES.get("file")
    try:
        document = document_create(
            user=request.user,  # type: ignore[arg-type]
            reader=_reader(request),
            title=request.POST.get("title", ""),
            content=request.POST.get("content", ""),
            upload=upload if upload is not None and upload.size else None,
            collection_id=ascii_integer(request.POST.get("collection_id") or ""),
        )
    except ApplicationError as exc:
        if _is_htmx(request):
            return render(request, "ai/_upload_result.html", {"error": exc.message}, status=400)
        # Without JavaScript too, a refusal keeps what was typed (a file cannot be given back).
        typed = {"title": request.POST.get("title", ""), "content": request.POST.get("content", "")}
        context = {"page": "documents", "accept": _ACCEPTED_FILES, **_document_list_context(request)}
        context |= {"typed": typed, "upload_error": exc.message}
        return render(request, "ai/documents.html", context, status=exc.status)
    if _is_htmx(request):
        return render(request, "ai/_upload_result.html", {"document": document, **_document_list_context(request)})
    messages.success(request, f"Added “{document.title}”: the list shows when it is ready to search.")
    return redirect("documents-page")


def _readable_document(request: HttpRequest, document_id: int) -> Document:
    """A document the asker may read; any other is a 404, as if it did not exist."""
    return get_object_or_404(
        documents_readable(_reader(request)).select_related("created_by", "collection"), id=document_id
    )


@member_required
@require_GET
def document_page(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _readable_document(request, document_id)
    reading = selectors.document_reading(
        document=document,
        passage_id=ascii_integer(request.GET.get("passage")),
        passages_page=ascii_integer(request.GET.get("passages")),
    )
    changeable = documents_changeable(_reader(request)).filter(id=document.id).exists()
    context = {
        "page": "documents",
        "reading": reading,
        "document": document,
        "changeable": changeable,
        "versions": document_versions(document=document),
        "accept": _ACCEPTED_FILES,
    }
    return render(request, "ai/document.html", context)


@member_required
@require_POST
def document_replace_page(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _readable_document(request, document_id)
    upload = request.FILES.get("file")
    try:
        document_replace(
            user=request.user,  # type: ignore[arg-type]
            reader=_reader(request),
            document=document,
            title=request.POST.get("title", ""),
            content=request.POST.get("content", ""),
            upload=upload if upload is not None and upload.size else None,
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Replaced with a new version; the earlier one is kept.")
    return redirect("document-page", document_id=document.id)


@member_required
def document_delete_page(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _readable_document(request, document_id)
    if request.method == "POST":
        title = document.title
        try:
            document_delete(
                reader=_reader(request),
                tenant=request.tenant,  # type: ignore[attr-defined]
                document=document,
                request=request,
            )
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return render(
                request, "ai/document_delete.html", {"page": "documents", "document": document}, status=exc.status
            )
        messages.success(request, f"Deleted “{title}” and its passages.")
        return redirect("documents-page")
    return render(request, "ai/document_delete.html", {"page": "documents", "document": document})


@member_required
@require_POST
def document_summarise_fragment(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _readable_document(request, document_id)
    try:
        result = document_summarise(user=request.user, document=document)  # type: ignore[arg-type]
    except ApplicationError as exc:
        return render(request, "ai/_summary.html", {"error": exc.message, "document": document}, status=exc.status)
    context = {"document": document, "summary_html": markdown_html(result.summary), "result": result}
    return render(request, "ai/_summary.html", context)


# --- collections (owners and admins) --------------------------------------------------------


def _admins_only(request: HttpRequest) -> None:
    if not _administers(request):
        raise PermissionDenied("Only owners and admins manage collections.")


def _collection_form(request: HttpRequest) -> dict[str, Any]:
    def ids(name: str) -> list[int]:
        return [i for i in (ascii_integer(v) for v in request.POST.getlist(name)) if i is not None]

    return {
        "name": request.POST.get("name", ""),
        "visibility": request.POST.get("visibility", Collection.Visibility.TENANT),
        "member_ids": ids("member_ids"),
        "api_key_ids": ids("api_key_ids"),
    }


def _collection_settings(
    request: HttpRequest, collection: Collection | None, *, error: str = "", status: int = 200
) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    named = collection_members(tenant=tenant, collection=collection) if collection is not None else None
    context = {
        "page": "documents",
        "collection": collection,
        "visibilities": Collection.Visibility.choices,
        "people": [membership.user for membership in members_list(tenant=tenant)],
        "keys": list(api_keys_list(tenant=tenant)),
        "named_people": {user.id for user in named["people"]} if named else set(),
        "named_keys": {key.id for key in named["keys"]} if named else set(),
        "others": list(collections_readable(_reader(request)).exclude(id=collection.pk)) if collection else [],
        "document_count": Document.objects.filter(collection=collection).count() if collection else 0,
        "error": error,
    }
    return render(request, "ai/collection.html", context, status=status)


@member_required
def collection_new_page(request: HttpRequest) -> HttpResponse:
    _admins_only(request)
    if request.method != "POST":
        return _collection_settings(request, None)
    try:
        collection = collection_create(tenant=request.tenant, user=request.user, **_collection_form(request))  # type: ignore[attr-defined,arg-type]
    except ApplicationError as exc:
        return _collection_settings(request, None, error=exc.message, status=exc.status)
    messages.success(request, f"Created the collection “{collection.name}”.")
    return redirect(f"/?collection={collection.pk}")


@member_required
def collection_page(request: HttpRequest, collection_id: int) -> HttpResponse:
    _admins_only(request)
    collection = get_object_or_404(collections_readable(_reader(request)), id=collection_id)
    if request.method != "POST":
        return _collection_settings(request, collection)
    form = _collection_form(request)
    if collection.is_default:
        form.pop("visibility")
    try:
        collection_update(tenant=request.tenant, collection=collection, **form)  # type: ignore[attr-defined]
    except ApplicationError as exc:
        return _collection_settings(request, collection, error=exc.message, status=exc.status)
    messages.success(request, f"Saved “{collection.name}”.")
    return redirect(f"/collections/{collection.pk}/")


@member_required
@require_POST
def collection_delete_page(request: HttpRequest, collection_id: int) -> HttpResponse:
    _admins_only(request)
    readable = collections_readable(_reader(request))
    collection = get_object_or_404(readable, id=collection_id)
    move_to_id = ascii_integer(request.POST.get("move_to") or "")
    move_to = readable.filter(id=move_to_id).first() if move_to_id is not None else None
    try:
        collection_delete(tenant=request.tenant, collection=collection, move_to=move_to, request=request)  # type: ignore[attr-defined]
    except ApplicationError as exc:
        return _collection_settings(request, collection, error=exc.message, status=exc.status)
    messages.success(request, f"Deleted the collection “{collection.name}”.")
    return redirect("documents-page")


# --- chat --------------------------------------------------------------------------------------


def _user_id(request: HttpRequest) -> int:
    return cast(int, request.user.pk)  # member_required let only a logged-in member through


def _conversations(request: HttpRequest, query: str = "") -> list[Conversation]:
    listed = conversations_listed(user_id=_user_id(request), query=query)
    return list(listed.only("id", "title", "pinned", "updated")[:100])


def _own_conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    conversation = selectors.conversations_for(user_id=_user_id(request)).filter(id=conversation_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _rendered(message: Message) -> dict[str, Any]:
    is_answer = message.role == Message.Role.ASSISTANT
    html = citations_link(markdown_html(message.content), message.sources) if is_answer else ""
    return {"message": message, "html": html, "retrieval": settings.CHAT_CONTEXT_CHUNKS > 0}


@member_required
@require_GET
def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id) if conversation_id is not None else None
    chat_messages = (
        [
            _rendered(m)
            for m in selectors.messages_readable(
                # The asker's feedback on each answer (its action's columns only, never its text).
                messages=list(
                    conversation.messages.filter(superseded=False)
                    .annotate(
                        feedback=F("agent_action__feedback"), feedback_comment=F("agent_action__feedback_comment")
                    )
                    .order_by("created", "id")
                ),
                reader=_reader(request),
            )
        ]
        if conversation is not None
        else []
    )
    scoped = ascii_integer(request.GET.get("document") or "")  # "Ask about this document"
    query = " ".join(request.GET.get("q", "").split())[:SEARCH_MAX_CHARS]
    context = {
        "page": "chat",
        "conversation": conversation,
        "conversations": _conversations(request, query),
        "query": query,
        "chat_messages": chat_messages,
        "collections": list(collections_readable(_reader(request))),
        "scoped_document": _readable_document(request, scoped) if scoped is not None else None,
        "retrieval": settings.CHAT_CONTEXT_CHUNKS > 0,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }
    return render(request, "ai/chat.html", context)


@member_required
@require_POST
def conversation_rename_page(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    try:
        conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("chat-conversation", conversation_id=conversation.id)


@member_required
@require_POST
def conversation_pin_page(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    conversation_pin(conversation=conversation, pinned=request.POST.get("pinned") == "1")
    return redirect("chat-conversation", conversation_id=conversation.id)


@member_required
def conversation_delete_page(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id)
    if request.method == "POST":
        conversation_delete(conversation=conversation)
        messages.success(request, f"Deleted the conversation “{conversation}”.")
        return redirect("chat-page")
    return render(request, "ai/conversation_delete.html", {"page": "chat", "conversation": conversation})
