"""The active prompt template of each kind, as the tenant's admins configured it.

Read before every chat turn and summary, so in plain SQL built once from the model's ``_meta``
(as ``billing.services.quota`` reads the plan): the ORM took longer to build this query than the
database to answer it, the largest of a turn's acceptance steps (tests/benchmarks/bench_chat_steps.py).
"""

from __future__ import annotations

import functools

from django.db import connection

from ai.models import PromptTemplate
from core.platform.exceptions import ApplicationError
from core.platform.sql_names import Selected, column, table


def prompt_active(*, name: str) -> PromptTemplate:
    """The active template named ``name`` in the current schema (at most one: a constraint)."""
    selected, sql = _active_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [name])
        row = cursor.fetchone()
    template = selected.instance(row) if row is not None else None
    if template is None:
        raise ApplicationError(
            f"No active '{name}' prompt template; an admin must activate one.", code="prompt_missing", status=409
        )
    return template


@functools.cache
def _active_sql() -> tuple[Selected[PromptTemplate], str]:
    selected = Selected(PromptTemplate, "p")
    return selected, (
        f"SELECT {selected.sql} FROM {table(PromptTemplate)} p"
        f" WHERE p.{column(PromptTemplate, 'active')} AND p.{column(PromptTemplate, 'name')} = %s LIMIT 1"
    )
