"""Multi-factor sign-in: TOTP and recovery codes per person (django-allauth's MFA), a tenant's policy."""
