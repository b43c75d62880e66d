"""The REST API: authentication, errors, pagination, OpenAPI, and every rate limit."""

from .env import env

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "core.platform.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("LOGIN_THROTTLE_RATE", default="10/min"),
        "signup": env.str("SIGNUP_THROTTLE_RATE", default="20/hour"),
    },
}
REST_AUTH = {
    "LOGIN_SERIALIZER": "tenants.serializers.TenantLoginSerializer",
    "USER_DETAILS_SERIALIZER": "tenants.serializers.UserSerializer",
    "SESSION_LOGIN": True,
}
SPECTACULAR_SETTINGS = {"TITLE": "Strata API", "VERSION": "1.0.0", "SERVE_INCLUDE_SCHEMA": False}

# Requests per minute per tenant to the AI endpoints (0 switches the limit off).
TENANT_RATE_LIMIT_PER_MINUTE = env.int("TENANT_RATE_LIMIT_PER_MINUTE", default=120)
