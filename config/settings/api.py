"""The REST API: authentication, errors, pagination, OpenAPI, and every rate limit."""

from .ai import DOCUMENT_MAX_UPLOAD_BYTES
from .env import env
from .security import TRUSTED_PROXY_COUNT

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.authentication.TenantTokenAuthentication",  # the token and its membership in one query
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Content negotiation by the Accept header only (no ?format=, which the schema would have to list).
    "URL_FORMAT_OVERRIDE": None,
    # JSON bodies only (nested at most core.platform.json.MAX_JSON_DEPTH deep); the document upload adds
    # multipart for its file.
    "DEFAULT_PARSER_CLASSES": ["core.platform.json.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.platform.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "core.platform.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.platform.schema.StrataAutoSchema",
    # DRF's own rule for the client address, the same as core.platform.client's (which our throttles use).
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("LOGIN_THROTTLE_RATE", default="10/min"),
        "signup": env.str("SIGNUP_THROTTLE_RATE", default="20/hour"),
        # Requests that e-mail someone or use a link, per client address (pages and API alike).
        "account_mail": env.str("ACCOUNT_MAIL_THROTTLE_RATE", default="10/hour"),
        "account_link": env.str("ACCOUNT_LINK_THROTTLE_RATE", default="30/hour"),
        # Single sign-on starts, callbacks and SAML responses, per client address.
        "sso": env.str("SSO_THROTTLE_RATE", default="30/min"),
    },
}
REST_AUTH = {
    "LOGIN_SERIALIZER": "tenants.serializers.TenantLoginSerializer",
    "USER_DETAILS_SERIALIZER": "tenants.serializers.UserSerializer",
    "SESSION_LOGIN": True,
    "OLD_PASSWORD_FIELD_ENABLED": True,  # a borrowed session or token cannot change the password
    "PASSWORD_RESET_SERIALIZER": "tenants.serializers.PasswordResetSerializer",
    "PASSWORD_RESET_CONFIRM_SERIALIZER": "tenants.serializers.PasswordResetConfirmSerializer",
    "PASSWORD_CHANGE_SERIALIZER": "tenants.serializers.PasswordChangeSerializer",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Strata API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Choice sets that share a field name ("status", "role"): each gets its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "DocumentStatusEnum": "ai.models.Document.Status",
        "CallStatusEnum": "ai.models.CallStatus",
        "MembershipRoleEnum": "tenants.models.Membership.Role",
    },
}

# Requests per minute per tenant to the AI endpoints (0 switches the limit off).
TENANT_RATE_LIMIT_PER_MINUTE = env.int("TENANT_RATE_LIMIT_PER_MINUTE", default=120)

# The largest request body any endpoint takes: a document upload and the rest of its form. A larger
# body is refused with 413 while it arrives (config.request_limits), before Django spools it.
REQUEST_MAX_BODY_BYTES = DOCUMENT_MAX_UPLOAD_BYTES + 1024 * 1024
