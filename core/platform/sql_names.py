"""Quoted table and column names from a model's ``_meta``, for the few statements kept as plain SQL;
model instances made back from their rows; and the INSERT and UPDATE of the rows written with
every chat answer, built once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from django.db import connection, models
from django.db.models import signals
from django_tenants.utils import get_public_schema_name

_Model = TypeVar("_Model", bound=models.Model)


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], field_name: str) -> str:
    """``"tenant_id"`` for ``column(UsageEvent, "tenant")``: a renamed field or ``db_column`` changes
    the statement with the model instead of breaking it at run time."""
    return connection.ops.quote_name(str(_field(model, field_name).column))


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column, f"{model.__name__}.{name} has no column"
    return field


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


class Inserted(Generic[_Model]):
    """A model's INSERT built once: ``create(**values)`` writes the row ``Model.objects.create``
    writes, without the ORM building the statement on every call (four times the cost of running
    it, for the rows written with every chat answer). The instance is made as the ORM makes it
    (defaults, ``auto_now_add``) and each value prepared by its field as the ORM prepares it.

    Through the ORM instead when it must be: the model has save signals' receivers, or a value is
    an expression (a database default or function) that the ORM would put in the statement."""

    def __init__(self, model: type[_Model]) -> None:
        meta = model._meta
        self.model = model
        self.fields = [
            field for field in meta.local_concrete_fields if not field.generated and field is not meta.auto_field
        ]
        columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in self.fields)
        placeholders = ", ".join(["%s"] * len(self.fields))
        pk = connection.ops.quote_name(str(meta.pk.column))
        self.sql = f"INSERT INTO {table(model)} ({columns}) VALUES ({placeholders}) RETURNING {pk}"

    def create(self, **values: Any) -> _Model:
        if signals.pre_save.has_listeners(self.model) or signals.post_save.has_listeners(self.model):
            return self.model._default_manager.create(**values)
        instance = self.model(**values)
        prepared = [field.pre_save(instance, True) for field in self.fields]
        if any(hasattr(value, "resolve_expression") for value in prepared):
            instance.save(force_insert=True)
            return instance
        params = [field.get_db_prep_save(value, connection) for field, value in zip(self.fields, prepared, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            (instance.pk,) = cursor.fetchone()
        instance._state.adding = False
        instance._state.db = connection.alias
        return instance


class Updated(Generic[_Model]):
    """``UPDATE`` of some of a model's columns by primary key, built once: what
    ``Model.objects.filter(pk=...).update(...)`` sends, each value prepared by its field as the ORM
    prepares it (a related row is given by its id: ``agent_action_id``). ``still_null``: only while
    these columns are NULL (``.filter(pk=..., agent_action__isnull=True)``). No signals: the ORM's
    ``update`` sends none either."""

    def __init__(self, model: type[_Model], field_names: Sequence[str], *, still_null: Sequence[str] = ()) -> None:
        self.fields = [_field(model, name) for name in field_names]
        assignments = ", ".join(f"{connection.ops.quote_name(str(field.column))} = %s" for field in self.fields)
        conditions = [f"{connection.ops.quote_name(str(model._meta.pk.column))} = %s"]
        conditions += [f"{column(model, name)} IS NULL" for name in still_null]
        self.sql = f"UPDATE {table(model)} SET {assignments} WHERE {' AND '.join(conditions)}"

    def run(self, pk: Any, values: Sequence[Any]) -> int:
        """Rows updated (0 or 1); ``values`` in the order of the field names."""
        params = [field.get_db_prep_save(value, connection) for field, value in zip(self.fields, values, strict=True)]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [*params, pk])
            return int(cursor.rowcount)
