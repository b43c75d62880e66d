"""A tenant host's team and account API and pages (included by config.urls_tenants)."""

from django.urls import include, path

from tenants import views
from tenants.api import InvitationAcceptApi
from tenants.api import router as team_router
from tenants.audit.api import AuditApi
from tenants.audit.views import audit_log_page
from tenants.mfa import api as mfa_api
from tenants.mfa import views as mfa_views
from tenants.scim.api import ScimTokenApi

urlpatterns = [
    # Before the router, whose invitations/<id>/ would take "accept" for an id.
    path("api/invitations/accept/", InvitationAcceptApi.as_view(), name="invitation-accept-api"),
    path("api/audit/", AuditApi.as_view(), name="audit-api"),
    path("api/sso/scim-token/", ScimTokenApi.as_view(), name="scim-token-api"),
    path("scim/v2/", include("tenants.scim.urls")),
    path("api/", include(team_router.urls)),
    path("api/auth/mfa/authenticators/", mfa_api.AuthenticatorsApi.as_view(), name="mfa-authenticators-api"),
    path("api/auth/mfa/totp/", mfa_api.TotpEnrolApi.as_view(), name="mfa-totp-api"),
    path("api/auth/mfa/totp/confirm/", mfa_api.TotpConfirmApi.as_view(), name="mfa-totp-confirm-api"),
    path("api/auth/mfa/recovery-codes/", mfa_api.RecoveryCodesApi.as_view(), name="mfa-recovery-codes-api"),
    path("api/auth/mfa/disable/", mfa_api.MfaDisableApi.as_view(), name="mfa-disable-api"),
    path("api/mfa/policy/", mfa_api.MfaPolicyApi.as_view(), name="mfa-policy-api"),
    path("login/mfa/", mfa_views.mfa_login_page, name="mfa-login"),
    path("account/security/", mfa_views.security_page, name="security-page"),
    path("invite/<str:token>/", views.invitation_accept_page, name="invitation-accept"),
    path("members/", views.members_page, name="members-page"),
    path("keys/", views.api_keys_page, name="api-keys-page"),
    path("audit/", audit_log_page, name="audit-page"),
    path("account/", views.account_page, name="account-page"),
    path("account/email/<str:token>/", views.email_change_confirm_page, name="email-change-confirm"),
    *views.password_reset_urlpatterns,
    path("", include("tenants.sso.urls")),
    path("", include("tenants.welcome")),
    path("", include("tenants.switch.urls")),
]
