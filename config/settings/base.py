"""Core Django settings: tenancy map, database, auth, REST framework, static files."""

from pathlib import Path

import django

from .env import BASE_DIR, DATA_DIR, PRODUCTION, data_dir_secret_key, env

# --- Tenancy: where each app's tables live -------------------------------------------
SHARED_APPS = [
    "django_tenants",  # schema routing; must come first
    "core",  # the global User and auth wiring: one account across organisations
    "tenants",  # Tenant, Domain, Membership: the map of who belongs where
    "tenants.audit",  # the audit log outlives a tenant's schema: one public table, tenant as plain columns
    "tenants.sso",  # each tenant's identity provider: read on the tenant host before any login
    "tenants.scim",  # SCIM tokens, users and groups per tenant: the token is found before any schema is entered
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
    "procrastinate.contrib.django",  # the job queue's tables and SQL functions live in public only
    "axes",  # login lockouts: counted per address and per account (users are global)
    "allauth",  # django-allauth: its OpenID Connect/SAML providers and its MFA
    "allauth.account",  # required by allauth's other apps (its own login views are not routed)
    "allauth.mfa",  # TOTP authenticators and recovery codes, per person (users are global)
    "allauth.socialaccount",  # social accounts: which tenant's provider vouched for whom (tenants.sso)
    "allauth.socialaccount.providers.openid_connect",  # its OpenID Connect provider, per tenant
    "allauth.socialaccount.providers.saml",  # its SAML 2.0 provider (python3-saml), per tenant (tenants.sso.saml)
    "tenants.mfa",  # each tenant's two-factor policy: read on the tenant host before any page
    "config",  # the wiring on top: its commands (up, worker...) and the operators' admin
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
# A connection's search_path is set once per checkout and per schema switch, not before every
# query (half the round trips of a request). Safe here: every pool checkout forgets the path
# (core.platform.database), and django-tenants 4.0.1 forgets it on rollback and savepoint
# rollback too (#1262; tests/tenants/test_isolation.py pins both).
TENANT_LIMIT_SET_CALLS = True
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
BASE_DOMAIN = env.str("BASE_DOMAIN", default="localhost")
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
DEFAULT_NOT_FOUND_TENANT_VIEW = "config.views.unknown_tenant"
ROOT_URLCONF = "config.urls_tenants"

# --- Core -----------------------------------------------------------------------------
# Production requires SECRET_KEY; elsewhere the data folder's own random key (never a public one,
# which would let anyone sign links).
SECRET_KEY = env.str("SECRET_KEY") if PRODUCTION else env.str("SECRET_KEY", default="") or data_dir_secret_key(DATA_DIR)
# Django's debug pages (settings, tracebacks) only when DEBUG is explicitly on.
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[BASE_DOMAIN, f".{BASE_DOMAIN}", "127.0.0.1"])
PORT = env.int("PORT", default=8000)
# The scheme people use: https in production (TLS ends at the proxy in front of uvicorn).
SITE_SCHEME = env.str("SITE_SCHEME", default="https" if PRODUCTION else "http")
# The port browsers see in tenant URLs and origins: none for https or port 80.
_PUBLIC_PORT = "" if SITE_SCHEME == "https" or PORT in (80, 443) else f":{PORT}"

MIDDLEWARE = [
    # First, so it sees the response last: a streaming response gives its pooled connection back
    # before it streams (core.platform.admission).
    "core.platform.admission.StreamingConnectionsReleaseMiddleware",
    # Static files, the favicon and the liveness probe are answered before anything looks up a
    # tenant: they never touch the database.
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.platform.health.LivenessMiddleware",
    "tenants.middleware.TenantHostMiddleware",  # django-tenants' lookup, case-insensitive
    # Notes the client address for audit entries that services write (tenants.audit).
    "tenants.audit.middleware.AuditContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # A page's form or query holding a NUL is a 400 before any view saves it.
    "core.platform.validators.StorableFormInputMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",  # allauth requires it (its request context)
    # After authentication: a blocked tenant's page tells its owner how to pay.
    "tenants.middleware.TenantStatusMiddleware",
    # After authentication: a tenant that requires two-factor sign-in sends people without it to set it up.
    "tenants.mfa.middleware.MfaEnrolmentMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last: turns a login that django-axes locked out into a 429 (core.platform.login_lockout).
    "axes.middleware.AxesMiddleware",
]

_DJANGO_ADMIN_TEMPLATES = Path(django.__file__).parent / "contrib" / "admin" / "templates"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Django's own admin templates before django_tenants' copies of admin/index.html and
        # admin/app_list.html, which carry inline styles the Content-Security-Policy refuses (and
        # mark apps by schema, which our two admin sites, each registering its own models, need not).
        "DIRS": [BASE_DIR / "core" / "templates", _DJANGO_ADMIN_TEMPLATES],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.workspace",
            ]
        },
    }
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "config.asgi.application"


# --- Auth -------------------------------------------------------------------------------
AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses locked-out clients before any password is checked
    "tenants.backends.TenantMemberBackend",  # on a tenant host, only its members
    "tenants.mfa.backends.MfaCodeBackend",  # the second step of a sign-in with two-factor on
]
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
# Forms posted from any tenant's host. Behind the proxy, uvicorn (--proxy-headers, trusting only the
# proxy's address) takes the scheme from the proxy's X-Forwarded-Proto, so Django sees https
# requests as secure without trusting that header itself: SECURE_PROXY_SSL_HEADER stays unset, and a
# client that reaches uvicorn directly cannot claim https.
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[f"{SITE_SCHEME}://*.{BASE_DOMAIN}{_PUBLIC_PORT}", f"{SITE_SCHEME}://{BASE_DOMAIN}{_PUBLIC_PORT}"],
)
LOGIN_URL = "/login/"
# Where a login without ?next= lands (and /login/ sends someone already logged in): the workspace's
# first page. Django's and allauth's default, /accounts/profile/, is no page of Strata's.
LOGIN_REDIRECT_URL = "/"
CSRF_FAILURE_VIEW = "config.views.csrf_failure"

# --- Static files, i18n ------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(DATA_DIR / "static"))
# Files served at the site root (favicon.ico), straight from WhiteNoise.
WHITENOISE_ROOT = BASE_DIR / "core" / "root_files"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Development serves app static files directly; production serves what collectstatic gathered.
WHITENOISE_USE_FINDERS = not PRODUCTION
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
# instead of cloning on the spot; a job refills them after each signup, and periodically.
TENANT_SPARE_SCHEMAS = env.int("TENANT_SPARE_SCHEMAS", default=2)
TENANT_SPARES_CHECK_CRON = env.str("TENANT_SPARES_CHECK_CRON", default="*/5 * * * *")
# A closed workspace can be restored by an operator this long; then a periodic job drops its
# schema and frees its subdomain (config.lifecycle).
TENANT_DELETE_GRACE_DAYS = env.int("TENANT_DELETE_GRACE_DAYS", default=30)
TENANT_DELETE_CRON = env.str("TENANT_DELETE_CRON", default="23 * * * *")
# Tenant schemas migrated at once by migrate_platform, one database connection each (threads
# replaying SQL, or worker processes running Django's migrate); schemas already current are
# skipped without being opened.
MIGRATE_PARALLEL_JOBS = env.int("MIGRATE_PARALLEL_JOBS", default=2)
# The audit log keeps entries this long; a periodic job deletes older ones (tenants.audit).
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=400)
AUDIT_PRUNE_CRON = env.str("AUDIT_PRUNE_CRON", default="41 3 * * *")
# Requests one organisation's SCIM token may make per minute (429 with Retry-After past it; 0 = off).
SCIM_REQUESTS_PER_MINUTE = env.int("SCIM_REQUESTS_PER_MINUTE", default=600)
# SCIM 2.0 (django-scim2): Strata's adapters scope every lookup to the host's tenant and admit
# only that tenant's SCIM token (tenants.scim).
SCIM_SERVICE_PROVIDER = {
    "USER_MODEL_GETTER": "tenants.scim.lookups.scim_user_model",
    "USER_ADAPTER": "tenants.scim.adapters.ScimUserAdapter",
    "GROUP_MODEL": "tenants.scim.models.ScimGroup",
    "GROUP_ADAPTER": "tenants.scim.adapters.ScimGroupAdapter",
    "USER_FILTER_PARSER": "tenants.scim.lookups.ScimUserFilter",
    "GROUP_FILTER_PARSER": "tenants.scim.lookups.ScimGroupFilter",
    "SERVICE_PROVIDER_CONFIG_MODEL": "tenants.scim.adapters.ScimServiceProviderConfig",
    "BASE_LOCATION_GETTER": "tenants.scim.lookups.scim_base_location",
    "GET_EXTRA_MODEL_FILTER_KWARGS_GETTER": "tenants.scim.lookups.tenant_filter_kwargs_getter",
    "GET_QUERYSET_POST_PROCESSOR_GETTER": "tenants.scim.lookups.related_prefetch_getter",
    "AUTH_CHECK_MIDDLEWARE": "tenants.scim.authentication.ScimTokenCheck",
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="scim"',
    # Required by django-scim2 but unused: Strata's own getters above replace what they feed.
    "NETLOC": "unused",
    "AUTHENTICATION_SCHEMES": [{"type": "oauthbearertoken"}],
}
