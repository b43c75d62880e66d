"""The OpenAPI schema says every status an operation can answer, each error in the one error shape.

drf-spectacular documents the success responses a view declares. ``StrataAutoSchema`` adds the
errors that come from the plumbing every view shares, derived from the view itself: 400 and 415
for a request body, 401 and 403 for a view that needs a login, 402 and 403 for a tenant view (a
tenant waiting for payment or suspended), 404 for a path with ids, 406 for content negotiation,
429 (with ``Retry-After``) for a throttled view. A view names the errors of its own work with
``extend_schema(responses={..., **error_responses(402, 503)})``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny

ERROR_DESCRIPTIONS = {
    400: "The request is not valid (error.code names the problem; error.fields the fields).",
    401: "No valid credentials.",
    402: "Payment required: the organisation's plan or allowance does not cover this, or it awaits payment.",
    403: "Not allowed: not a member of this organisation, not enough rights, or the organisation is suspended.",
    404: "Not found.",
    406: "None of the media types in Accept can be served.",
    409: "Conflicts with the resource's current state.",
    410: "Gone: the link was used already or has expired, or the workspace has been closed.",
    413: "Too large.",
    415: "The request body's media type is not accepted.",
    429: "Too many requests: wait for the seconds in Retry-After.",
    502: "The AI provider refused or failed the request.",
    503: "A service this needs is unavailable; try again later.",
}

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 0},
        "description": "Seconds to wait before trying again.",
        "required": True,
    }
}


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="A stable, machine-readable code, e.g. quota_exceeded.")
    message = serializers.CharField(help_text="A sentence for people.")
    fields = serializers.DictField(  # type: ignore[assignment]  # the error's key, not Serializer.fields
        required=False, help_text="For invalid input: the problems of each field, by field name."
    )


class ErrorSerializer(serializers.Serializer[Any]):
    """Every error: ``{"error": {"code", "message", "fields"?, ...}}``."""

    error = ErrorDetailSerializer()


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """``extend_schema`` responses for the errors an operation's own work can answer."""
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status]) for status in statuses}


class StrataAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for status in sorted(self._plumbing_errors() - {int(code) for code in responses}):
            responses[str(status)] = self._get_response_for_code(  # type: ignore[no-untyped-call]
                error_responses(status)[status], str(status), media_types=["application/json"], direction=direction
            )
        for code, response in responses.items():
            if code == "429":
                response["headers"] = {**response.get("headers", {}), **RETRY_AFTER_HEADER}
            elif code.startswith(("4", "5")):
                # Errors are JSON whatever the operation's success type (an event stream, say).
                for media_type in list(response.get("content", {})):
                    if media_type != "application/json":
                        response["content"].pop(media_type)
        return responses

    def _plumbing_errors(self) -> set[int]:
        view = self.view
        statuses = {406}
        if self.method in ("POST", "PUT", "PATCH"):
            statuses |= {400, 415}
        if not all(isinstance(permission, AllowAny) for permission in view.get_permissions()):
            statuses |= {401, 403}
        if getattr(view, "membership_permission", None) is not None:  # a tenant view (core.platform.api)
            statuses |= {402, 403, 410}  # 410: the workspace has been closed (tenants.middleware)
        paginated = self._is_list_view() and self._get_paginator() is not None  # type: ignore[no-untyped-call]
        if "{" in self.path or paginated:
            statuses.add(404)  # an unknown id, or a page past the end
        if view.get_throttles():
            statuses.add(429)
        return statuses
