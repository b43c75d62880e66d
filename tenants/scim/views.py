"""django-scim2's views, refusing any body that is not a JSON object with a SCIM 400."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django_scim import exceptions as scim_errors
from django_scim import views

# Where an identity provider calls (tenants/urls_tenant.py mounts django-scim2's routes here).
SCIM_PATH = "/scim/"


class _JsonObjectBody:
    def load_body(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body.decode("utf-8").strip() or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise scim_errors.BadRequestError(f"The body is not JSON: {exc}", scim_type="invalidSyntax") from exc
        if not isinstance(data, dict):
            raise scim_errors.BadRequestError("The body must be a JSON object.", scim_type="invalidSyntax")
        return data


class ScimUsersView(_JsonObjectBody, views.UsersView):  # type: ignore[misc]
    pass


class ScimGroupsView(_JsonObjectBody, views.GroupsView):  # type: ignore[misc]
    pass


class ScimUserSearchView(_JsonObjectBody, views.UserSearchView):  # type: ignore[misc]
    pass


class ScimGroupSearchView(_JsonObjectBody, views.GroupSearchView):  # type: ignore[misc]
    pass


def scim_refusal(*, status: int, detail: str) -> HttpResponse:
    """A refusal made before django-scim2's views, in the error shape its callers parse (RFC 7644 3.12)."""
    body = scim_errors.SCIMException(detail, status=status).to_dict()
    return HttpResponse(json.dumps(body), status=status, content_type="application/scim+json")
