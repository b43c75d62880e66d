"""The SCIM endpoints' door: a tenant's own SCIM token on its own host, else a SCIM 401."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django_scim import constants
from django_scim.middleware import SCIMAuthCheckMiddleware

from tenants.scim.services import scim_token_authenticate

WWW_AUTHENTICATE = 'Bearer realm="scim"'


def scim_unauthorised() -> HttpResponse:
    body = {
        "schemas": [constants.SchemaURI.ERROR],
        "status": "401",
        "detail": "A valid SCIM token of this organisation is required.",
    }
    response = HttpResponse(json.dumps(body), content_type=constants.SCIM_CONTENT_TYPE, status=401)
    response["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


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
            return scim_unauthorised()
        request.scim_token = token  # type: ignore[attr-defined]
        return None
