"""Core Django settings: tenancy map, database, auth, REST framework, static files."""

from pathlib import Path

from .env import BASE_DIR, PRODUCTION, env, required_in_production

# --- Tenancy: where each app's tables live -------------------------------------------
SHARED_APPS = [
    "django_tenants",  # schema routing; must come first
    "core",  # the global User and auth wiring: one account across organisations
    "tenants",  # Tenant, Domain, Membership: the map of who belongs where
    "billing",  # plans, subscriptions and the usage ledger are aggregated across tenants
    "django.contrib.contenttypes",  # needed by auth/admin in public
    "django.contrib.auth",  # permissions and groups for the platform operators
    "django.contrib.admin",  # the platform operator admin on the public host
    "django.contrib.sessions",  # sessions of the public site
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # API tokens are global, authorisation is per tenant
    "dj_rest_auth",
    "drf_spectacular",
    "channels",
]

TENANT_APPS = [
    "django.contrib.contenttypes",  # the tenant admin's log needs content types in the schema
    "django.contrib.admin",  # the tenant admin logs its actions in the tenant's schema
    "django.contrib.sessions",  # a session made on one tenant's host does not exist on another's
    "ai",  # documents, chunks, conversations, prompts, agent actions: never leave the schema
]

INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
# New tenants are cloned from this migrated schema instead of replaying migrations.
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
TENANT_LIMIT_SET_CALLS = True
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
BASE_DOMAIN = env.str("BASE_DOMAIN", default="localhost")
PUBLIC_SCHEMA_URLCONF = "core.urls_public"
DEFAULT_NOT_FOUND_TENANT_VIEW = "core.views.unknown_tenant"
ROOT_URLCONF = "core.urls_tenants"

# --- Core -----------------------------------------------------------------------------
SECRET_KEY = required_in_production("SECRET_KEY", "strata-insecure-development-key-change-me")
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[BASE_DOMAIN, f".{BASE_DOMAIN}", "127.0.0.1"])
DATA_DIR = Path(env.str("STRATA_DATA_DIR", default=str(BASE_DIR / ".data")))
PORT = env.int("PORT", default=8000)
SITE_SCHEME = env.str("SITE_SCHEME", default="http")

MIDDLEWARE = [
    "django_tenants.middleware.main.TenantMainMiddleware",
    "tenants.middleware.TenantStatusMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "core" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "core.asgi.application"


# --- Database ---------------------------------------------------------------------------
def _database() -> dict:
    if env.str("DATABASE_URL", default=""):
        config = env.db_url("DATABASE_URL")
    else:
        from core.embedded_db import embedded_database_url

        config = environ_db(embedded_database_url(DATA_DIR))
    config["ENGINE"] = "django_tenants.postgresql_backend"
    config["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    config["CONN_HEALTH_CHECKS"] = True
    return config


def environ_db(url: str) -> dict:
    from environ import Env

    return Env.db_url_config(url)


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------
AUTH_USER_MODEL = "core.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Host-only cookies: a session made on acme.localhost is never sent to globex.localhost.
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[f"http://*.{BASE_DOMAIN}:{PORT}", f"http://{BASE_DOMAIN}:{PORT}"],
)
LOGIN_URL = "/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "login": env.str("LOGIN_THROTTLE_RATE", default="10/min"),
        "signup": env.str("SIGNUP_THROTTLE_RATE", default="20/hour"),
    },
}
REST_AUTH = {
    "LOGIN_SERIALIZER": "core.serializers.TenantLoginSerializer",
    "USER_DETAILS_SERIALIZER": "core.serializers.UserSerializer",
    "SESSION_LOGIN": True,
}
SPECTACULAR_SETTINGS = {"TITLE": "Strata API", "VERSION": "1.0.0", "SERVE_INCLUDE_SCHEMA": False}

# --- Caches (throttles), static files, i18n ---------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request without it
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}
# Spare tenant schemas cloned ahead of time: a signup renames one into place (milliseconds)
# instead of cloning on the spot; refilled in the background after each signup.
TENANT_SPARE_SCHEMAS = env.int("TENANT_SPARE_SCHEMAS", default=2)
