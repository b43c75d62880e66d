"""Teams and accounts: invitations, password reset, e-mail change, tenant API keys."""

from .env import DATA_DIR, env

# An invitation link works this many days after it was (re)sent, once.
INVITATION_TTL_DAYS = env.int("INVITATION_TTL_DAYS", default=7)
# New and re-sent invitations per tenant per hour (0 = no limit).
INVITATIONS_PER_TENANT_PER_HOUR = env.int("INVITATIONS_PER_TENANT_PER_HOUR", default=20)
# Seconds a password reset link works (Django's setting; a new password also ends it).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=2 * 3600)
# Seconds an e-mail change confirmation link works.
EMAIL_CHANGE_MAX_AGE = env.int("EMAIL_CHANGE_MAX_AGE", default=24 * 3600)
# Where a person's data and workspace archives wait to be downloaded (config.downloads); with several
# machines, a volume the job workers and the web processes share.
EXPORTS_DIR = env.path("EXPORTS_DIR", default=str(DATA_DIR / "exports"))
# Seconds a mailed download link works; the file is deleted after that.
EXPORT_LINK_MAX_AGE = env.int("EXPORT_LINK_MAX_AGE", default=7 * 24 * 3600)
# Tenant API views (core.platform.api) accept `Authorization: Bearer <key>` through this class.
TENANT_API_KEY_AUTHENTICATION = "tenants.authentication.ApiKeyAuthentication"

# Two-factor sign-in (allauth.mfa; tenants.mfa): TOTP and recovery codes, secrets stored encrypted.
MFA_ADAPTER = "tenants.mfa.adapter.StrataMfaAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Strata"
# A code from the 30-second step before or after the server's clock is accepted too (phones drift);
# each code still works once (allauth remembers used codes for the whole window).
MFA_TOTP_TOLERANCE = 1
# Seconds between the password step and the code step of a sign-in (the signed "MFA pending" state).
MFA_LOGIN_MAX_AGE = env.int("MFA_LOGIN_MAX_AGE", default=300)
# Seconds to type the first code after a TOTP secret is shown, before it must be started again.
MFA_ENROL_MAX_AGE = 600
