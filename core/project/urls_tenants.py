"""URLs of a tenant host: its API, its admin and its web pages."""

from django.urls import include, path

from ai import views as pages
from ai.api import ChatCancelApi, ChatSseApi, ChatStreamApi, SearchApi
from ai.api import router as ai_router
from core.project.urls_common import (  # noqa: F401
    common_urlpatterns,
    handler400,
    handler403,
    handler404,
    handler500,
    schema_view,
)
from tenants.admin import tenant_admin_site

urlpatterns = [
    path("", pages.documents_page, name="documents-page"),
    path("chat/", pages.chat_page, name="chat-page"),
    path("usage/", pages.usage_page, name="usage-page"),
    path("login/", pages.LoginView.as_view(), name="login"),
    path("logout/", pages.LogoutView.as_view(), name="logout"),
    path("admin/", tenant_admin_site.urls),
    path("api/", include(ai_router.urls)),
    path("api/search/", SearchApi.as_view(), name="search"),
    path("api/chat/", ChatSseApi.as_view(), name="chat-sse"),
    path("api/chat/<int:message_id>/stream/", ChatStreamApi.as_view(), name="chat-stream"),
    path("api/chat/<int:message_id>/cancel/", ChatCancelApi.as_view(), name="chat-cancel"),
    path("api/", include("billing.urls_tenant")),
    path("", include("tenants.urls_tenant")),
    schema_view(__name__),
    *common_urlpatterns,
]
