"""Teams and accounts: invitations, password reset, e-mail change, tenant API keys."""

from .env import env

# An invitation link works this many days after it was (re)sent, once.
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)
# New and re-sent invitations per tenant per hour (0 = no limit).
INVITATIONS_PER_TENANT_PER_HOUR = env.int("INVITATIONS_PER_TENANT_PER_HOUR", default=20)
# Seconds a password reset link works (Django's setting; a new password also ends it).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=2 * 3600)
# Seconds an e-mail change confirmation link works.
EMAIL_CHANGE_MAX_AGE = env.int("EMAIL_CHANGE_MAX_AGE", default=24 * 3600)
# Tenant API views (core.platform.api) accept `Authorization: Bearer <key>` through this class.
TENANT_API_KEY_AUTHENTICATION = "tenants.authentication.ApiKeyAuthentication"
