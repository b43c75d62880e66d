"""Quoted table and column names from a model's ``_meta``, for the few statements kept as plain SQL,
and model instances made back from their rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django.db import connection, models
from django_tenants.utils import get_public_schema_name

_Model = TypeVar("_Model", bound=models.Model)


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], field_name: str) -> str:
    """``"tenant_id"`` for ``column(UsageEvent, "tenant")``: a renamed field or ``db_column`` changes
    the statement with the model instead of breaking it at run time."""
    field = model._meta.get_field(field_name)
    assert isinstance(field, models.Field) and field.column, f"{model.__name__}.{field_name} has no column"
    return connection.ops.quote_name(field.column)


def public_table(model: type[models.Model]) -> str:
    """``"public"."tenants_tenant"``: a table of the public schema, whatever the search_path."""
    return f"{connection.ops.quote_name(get_public_schema_name())}.{table(model)}"


class Selected(Generic[_Model]):
    """A model's concrete columns in a plain SELECT (``sql``: ``alias."id", alias."name", ...``) and
    its instance made back from the row's slice of them as the ORM makes one (``Model.from_db``);
    None when the slice is a LEFT JOIN's empty side. A new field is read with the model."""

    def __init__(self, model: type[_Model], alias: str) -> None:
        self.model = model
        fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in fields]
        self.sql = ", ".join(f"{alias}.{connection.ops.quote_name(str(field.column))}" for field in fields)
        self._pk = self.attnames.index(model._meta.pk.attname)

    def __len__(self) -> int:
        return len(self.attnames)

    def instance(self, values: Sequence[Any]) -> _Model | None:
        if values[self._pk] is None:
            return None
        return self.model.from_db(connection.alias, self.attnames, tuple(values))
