"""Transport and browser security: the proxy chain, HTTPS and HSTS, Content-Security-Policy, and
login lockouts. Production turns HTTPS on; `manage.py check --deploy` is clean there."""

from datetime import timedelta

from csp.constants import NONE, SELF

from .env import PRODUCTION, env
from .redis import REDIS_URL
from .stripe import STRIPE_PAGE_ORIGINS

# --- The proxy chain ---------------------------------------------------------------------
# How many proxies in front of the app append to X-Forwarded-For (nginx: 1). 0 = the socket peer
# is the client and X-Forwarded-For is ignored. Every throttle and lockout keys on the address
# this gives (core.platform.client); uvicorn runs with --no-proxy-headers so it is applied once.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT:
    # Only our proxy can have written this header (it overwrites whatever the client sent).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- HTTPS ---------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Probes speak plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0)
# Every tenant is a subdomain of BASE_DOMAIN, served under the same wildcard certificate.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Invitation and password-reset links carry tokens in their paths: never send a URL to another site.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Content-Security-Policy (django-csp) ---------------------------------------------------
# Scripts and styles come from our own static files only: no inline code, no eval.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        # 'self' covers same-host ws:/wss: (the chat socket) in CSP Level 3 browsers.
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        # Billing forms answer with a redirect to Stripe's pages, which form-action governs too.
        "form-action": [SELF, *STRIPE_PAGE_ORIGINS],
        "frame-ancestors": [NONE],
    }
}

# --- Login lockouts (django-axes) -----------------------------------------------------------
# Failed logins are counted per client address and per account, on every login path (API,
# tenant pages, tenant admin, operator admin): any of them past the limit is refused with 429
# until the cool-off has passed. A non-member's correct password counts as a failure.
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"  # the shared cache (Redis with REDIS_URL)
# Without REDIS_URL every limit (DRF throttles, AI rate limits, stream slots, these lockouts) lives
# in the process's memory, as documented: right for `manage.py up`'s one process; more processes
# set REDIS_URL. django-axes warns about a per-process cache, so the warning is off only then.
SILENCED_SYSTEM_CHECKS = [] if REDIS_URL else ["axes.W001"]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
# A success does not clear the address's count: else logging in to one's own account between
# guesses would reset the limit on guessing others'.
AXES_RESET_ON_SUCCESS = False
# Attempts while locked out do not push the end of the lockout further away.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "core.platform.client.client_ip"
AXES_USERNAME_CALLABLE = "core.platform.login_lockout.login_username"
AXES_LOCKOUT_CALLABLE = "core.platform.login_lockout.lockout_response"
AXES_ENABLE_ADMIN = False  # the cache handler keeps no rows to show
AXES_VERBOSE = False
