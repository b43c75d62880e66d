"""A tenant host's team and account API and pages (included by config.urls_tenants)."""

from django.urls import include, path

from tenants import views
from tenants.api import InvitationAcceptApi
from tenants.api import router as team_router

urlpatterns = [
    # Before the router, whose invitations/<id>/ would take "accept" for an id.
    path("api/invitations/accept/", InvitationAcceptApi.as_view(), name="invitation-accept-api"),
    path("api/", include(team_router.urls)),
    path("invite/<str:token>/", views.invitation_accept_page, name="invitation-accept"),
    path("members/", views.members_page, name="members-page"),
    path("keys/", views.api_keys_page, name="api-keys-page"),
    path("account/", views.account_page, name="account-page"),
    path("account/email/<str:token>/", views.email_change_confirm_page, name="email-change-confirm"),
    *views.password_reset_urlpatterns,
]
