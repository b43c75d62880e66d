"""The SCIM endpoints' door: a tenant's own SCIM token on its own host, else a SCIM 401; and their
rate limits, answered with a SCIM 429 and ``Retry-After`` (which Okta and Entra honour)."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_scim import constants
from django_scim.middleware import SCIMAuthCheckMiddleware

from core.platform.counters import window_count, window_seconds_left
from tenants.scim.services import scim_token_authenticate
from tenants.throttles import AccountLinkThrottle

WWW_AUTHENTICATE = 'Bearer realm="scim"'
_WINDOW_SECONDS = 60


def scim_error(status: int, detail: str) -> HttpResponse:
    body = {"schemas": [constants.SchemaURI.ERROR], "status": str(status), "detail": detail}
    return HttpResponse(json.dumps(body), content_type=constants.SCIM_CONTENT_TYPE, status=status)


def scim_unauthorised() -> HttpResponse:
    response = scim_error(401, "A valid SCIM token of this organisation is required.")
    response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


def scim_too_many(*, retry_after: int, detail: str) -> HttpResponse:
    response = scim_error(429, detail)
    response["Retry-After"] = str(max(1, retry_after))
    return response


def _refused(request: HttpRequest) -> HttpResponse:
    """A request without this tenant's token: a 401, or a 429 once its address has tested too many
    secrets (the account_link budget, shared with invitation and reset links)."""
    throttle = AccountLinkThrottle()
    if not throttle.allow_request(request, None):  # type: ignore[arg-type] # no view: the scope is the class
        return scim_too_many(retry_after=int(throttle.wait() or 60), detail="Too many failed requests; slow down.")
    return scim_unauthorised()


def _over_tenant_rate(tenant_id: int) -> int | None:
    """Seconds to wait when the tenant's provider is past SCIM_REQUESTS_PER_MINUTE, else None: one
    organisation's directory sync cannot take the web processes from the others."""
    limit = settings.SCIM_REQUESTS_PER_MINUTE
    if not limit:
        return None
    now = timezone.now().timestamp()
    if window_count(f"strata:scim:{tenant_id}", window_seconds=_WINDOW_SECONDS, now=now) <= limit:
        return None
    return window_seconds_left(window_seconds=_WINDOW_SECONDS, now=now)


class ScimTokenCheck(SCIMAuthCheckMiddleware):  # type: ignore[misc]
    """django-scim2's AUTH_CHECK_MIDDLEWARE (it wraps every SCIM view): admits a request whose
    ``Authorization: Bearer`` is the SCIM token of the tenant its host selected. A token of
    another tenant, a person's session or login token, or an API key gets 401."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if self.should_log_request(request):
            self.log_request(request)
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        token = None
        if scheme.lower() == "bearer":
            token = scim_token_authenticate(raw=raw, tenant=getattr(request, "tenant", None))
        if token is None:
            return _refused(request)
        wait = _over_tenant_rate(token.tenant_id)
        if wait is not None:
            return scim_too_many(retry_after=wait, detail="Too many requests for this organisation; retry later.")
        request.scim_token = token  # type: ignore[attr-defined]
        return None
