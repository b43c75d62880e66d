"""URLs of a tenant host: its API, its admin and its web pages."""

from django.urls import include, path

from ai import views as pages
from ai.api import ChatCancelApi, ChatSseApi, ChatStreamApi, SearchApi
from ai.api import router as ai_router
from config.data_views import (
    AccountApi,
    AccountExportApi,
    account_delete_page,
    account_export_page,
    download_page,
    tenant_export_page,
)
from config.urls_common import (  # noqa: F401
    common_urlpatterns,
    handler400,
    handler403,
    handler404,
    handler500,
    schema_view,
)
from config.workspace_views import WorkspaceCloseApi, workspace_close_page
from tenants.admin import tenant_admin_site

urlpatterns = [
    path("", pages.documents_page, name="documents-page"),
    path("documents/list/", pages.document_list_fragment, name="document-list"),
    path("documents/upload/", pages.document_upload, name="document-upload"),
    path("documents/<int:document_id>/", pages.document_page, name="document-page"),
    path("documents/<int:document_id>/delete/", pages.document_delete_page, name="document-delete"),
    path("documents/<int:document_id>/replace/", pages.document_replace_page, name="document-replace"),
    path("documents/<int:document_id>/summarise/", pages.document_summarise_fragment, name="document-summarise"),
    path("collections/new/", pages.collection_new_page, name="collection-new"),
    path("collections/<int:collection_id>/", pages.collection_page, name="collection-page"),
    path("collections/<int:collection_id>/delete/", pages.collection_delete_page, name="collection-delete"),
    path("chat/", pages.chat_page, name="chat-page"),
    path("chat/<int:conversation_id>/", pages.chat_page, name="chat-conversation"),
    path("chat/<int:conversation_id>/rename/", pages.conversation_rename_page, name="conversation-rename"),
    path("chat/<int:conversation_id>/delete/", pages.conversation_delete_page, name="conversation-delete"),
    path("chat/<int:conversation_id>/pin/", pages.conversation_pin_page, name="conversation-pin"),
    path("", include("billing.urls_pages")),
    path("login/", pages.LoginView.as_view(), name="login"),
    path("logout/", pages.LogoutView.as_view(), name="logout"),
    path("admin/", tenant_admin_site.urls),
    path("api/", include(ai_router.urls)),
    path("api/search/", SearchApi.as_view(), name="search"),
    path("api/chat/", ChatSseApi.as_view(), name="chat-sse"),
    path("api/chat/<int:message_id>/stream/", ChatStreamApi.as_view(), name="chat-stream"),
    path("api/chat/<int:message_id>/cancel/", ChatCancelApi.as_view(), name="chat-cancel"),
    path("api/", include("billing.urls_tenant")),
    path("api/workspace/close/", WorkspaceCloseApi.as_view(), name="workspace-close-api"),
    path("workspace/close/", workspace_close_page, name="workspace-close"),
    path("api/account/export/", AccountExportApi.as_view(), name="account-export-api"),
    path("api/account/", AccountApi.as_view(), name="account-api"),
    path("billing/export/", tenant_export_page, name="tenant-export"),
    path("account/export/", account_export_page, name="account-export"),
    path("account/delete/", account_delete_page, name="account-delete"),
    path("downloads/<str:token>/", download_page, name="download"),
    path("", include("tenants.urls_tenant")),
    schema_view(__name__),
    *common_urlpatterns,
]
