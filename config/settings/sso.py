"""Single sign-on: django-allauth's social accounts, made per tenant by tenants.sso."""

from .env import PRODUCTION, env

# Every tenant's identity provider comes from its SsoConfig through this adapter; allauth's own
# database and settings apps are not used.
SOCIALACCOUNT_ADAPTER = "tenants.sso.adapter.TenantSocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS = {
    # allauth's OpenID Connect provider with the id token checks it leaves out (tenants.sso.oidc).
    "openid_connect": {"provider_class": "tenants.sso.oidc.TenantOIDCProvider"},
}
SOCIALACCOUNT_STORE_TOKENS = False  # a sign-in needs the id token once; no provider tokens are kept
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # linking by e-mail follows tenants.sso's rules only
# Seconds Strata waits for an identity provider (discovery, JWKS, token endpoint).
SOCIALACCOUNT_REQUESTS_TIMEOUT = env.int("SSO_HTTP_TIMEOUT", default=10)
# Outside production, identity providers on this machine or a private network are accepted (http://
# on the loopback address, private addresses: tests run a local provider); in production only
# https:// to public addresses, since the server itself fetches them.
SSO_LOCAL_PROVIDERS = not PRODUCTION
# Our User has no username: sign-in is by e-mail. allauth (and dj-rest-auth's registration views,
# which drf-spectacular imports once allauth is installed) must not look for one.
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
