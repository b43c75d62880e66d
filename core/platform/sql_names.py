"""Quoted table and column names from a model's ``_meta``, for the few statements kept as plain SQL."""

from __future__ import annotations

from django.db import connection, models


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], field_name: str) -> str:
    """``"tenant_id"`` for ``column(UsageEvent, "tenant")``: a renamed field or ``db_column`` changes
    the statement with the model instead of breaking it at run time."""
    field = model._meta.get_field(field_name)
    assert isinstance(field, models.Field) and field.column, f"{model.__name__}.{field_name} has no column"
    return connection.ops.quote_name(field.column)
