"""Strict DRF input fields: the type the schema says, and text PostgreSQL can store.

DRF's own fields coerce: a CharField takes 42 and stores "42", an IntegerField takes "42" and
4.0. The OpenAPI schema says string and integer; a JSON body that sends otherwise is refused.
"""

from __future__ import annotations

from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from core.platform.validators import storable_text


class StorableCharField(serializers.CharField):
    """A string (not a number made into one), holding only text PostgreSQL can store; the one
    storable-text check replaces DRF's own two."""

    default_error_messages = {"invalid": "Not a valid string."}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        drf_checks = (ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator)
        self.validators = [validator for validator in self.validators if not isinstance(validator, drf_checks)]
        self.validators.append(storable_text)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not "42", not 4.0, not true."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number: not "0.5", not true."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean: not 0, not "yes"."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data
