"""Text that PostgreSQL can store: one check for every way text comes in (DRF serializers through
core.platform.fields, the chat message frames, forms, webhook payloads).

PostgreSQL text and JSONB cannot hold NUL (U+0000), and UTF-8 cannot encode a lone surrogate
(U+D800-U+DFFF, which JSON's ``\\ud800`` escapes can produce). Either reaching a query is a
``DataError`` or an encoding error, so a 500 instead of a 400; refuse them where text enters.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import ProhibitNullCharactersValidator
from django.utils.deconstruct import deconstructible

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_CODE = "invalid_characters"


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
