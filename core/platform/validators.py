"""Input PostgreSQL can store: one check for every way text comes in (DRF serializers through
core.platform.fields, the chat message frames, every page's form and query, webhook payloads), and
integers from URLs and forms that fit a bigint.

PostgreSQL text and JSONB cannot hold NUL (U+0000), and UTF-8 cannot encode a lone surrogate
(U+D800-U+DFFF, which JSON's ``\\ud800`` escapes can produce). Either reaching a query is a
``DataError`` or an encoding error, so a 500 instead of a 400; refuse them where text enters.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import BadRequest, ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.deconstruct import deconstructible
from rest_framework.views import APIView

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_CODE = "invalid_characters"
# Up to 18 ASCII digits: every such number fits PostgreSQL's bigint (and Python's int() at once).
_ASCII_INTEGER = re.compile("[0-9]{1,18}")


def ascii_integer(value: str | None) -> int | None:
    """``value`` as a non-negative integer when it is 1 to 18 ASCII digits, else None.

    Not ``str.isdigit()`` then ``int()``: "²" is a digit that int() refuses, and int() refuses more
    than 4,300 digits; both were 500s. Callers answer None with a 400, or treat it as absent."""
    if value is None or not _ASCII_INTEGER.fullmatch(value):
        return None
    return int(value)


def text_unstorable_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    return f"Text may not contain the character U+{ord(found.group()):04X}."


def json_unstorable_reason(value: Any) -> str | None:
    """The same, for every string (keys included) inside a parsed JSON value."""
    if isinstance(value, str):
        return text_unstorable_reason(value)
    if isinstance(value, dict):
        items: Any = (item for pair in value.items() for item in pair)
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        reason = json_unstorable_reason(item)
        if reason:
            return reason
    return None


@deconstructible
class StorableTextValidator:
    """A Django validator (forms, serializers): refuses text PostgreSQL cannot store."""

    code = UNSTORABLE_CODE

    def __call__(self, value: Any) -> None:
        if isinstance(value, str):
            reason = text_unstorable_reason(value)
            if reason:
                raise ValidationError(reason, code=self.code)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorableTextValidator)


storable_text = StorableTextValidator()


class StorableTextFormMixin:
    """For Django forms: every text field refuses what PostgreSQL cannot store."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():  # type: ignore[attr-defined]
            if isinstance(field, forms.CharField) and storable_text not in field.validators:
                field.validators = [_ for _ in field.validators if not isinstance(_, ProhibitNullCharactersValidator)]
                field.validators.append(storable_text)


class StorableFormInputMiddleware:
    """Refuses (400) a request to a page whose query or form fields hold text PostgreSQL cannot
    store: one check in front of every page and admin form, where a NUL was a 500 from whichever
    view saved it. API views are left to their serializers, which name the field
    (``invalid_characters``)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self.get_response(request)
        return response

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        if _is_api_view(view_func):
            return
        for value in _submitted_text(request):
            reason = text_unstorable_reason(value)
            if reason:
                raise BadRequest(reason)  # the host's 400 page (config.views.bad_request)


def _is_api_view(view_func: Any) -> bool:
    view_class = getattr(view_func, "cls", None)
    return isinstance(view_class, type) and issubclass(view_class, APIView)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _submitted_text(request: HttpRequest) -> Any:
    """Every name and value of the query and of a form body (Django drops what is not printable
    from uploaded files' names itself)."""
    submitted = [request.GET]
    if request.method == "POST" and request.content_type in _FORM_TYPES:
        try:
            submitted.append(request.POST)
        except MultiPartParserError as exc:
            raise BadRequest("The form's multipart body is malformed.") from exc
    for fields in submitted:
        for name, values in fields.lists():
            yield name
            yield from values
