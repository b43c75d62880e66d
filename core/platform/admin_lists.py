"""Admin changelists over tables of millions of rows: planner-estimated counts, keyset pages, date ranges.

Django's changelist counts every row (twice), pages with OFFSET, lists a filter's choices with
SELECT DISTINCT and drills dates down by sorting every timestamp: each costs time in proportion
to the table. ``LargeTableAdmin`` replaces them with work in proportion to a page: the count is the
planner's estimate (exact when small), "Next" continues after the last row shown (a keyset
cursor in the ``after`` parameter, an index range scan however deep), "Last" is the first page
in the opposite order, and a date range replaces ``date_hierarchy``.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import date, datetime, time, timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, ChangeList
from django.core.paginator import Page, Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.templatetags.static import static
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

CURSOR_VAR = "after"
# Below this many rows a count is exact (and bounded: it stops here); above it, the estimate.
EXACT_COUNT_MAX = 10_000


def rows_estimate(queryset: QuerySet[Any]) -> int:
    """How many rows the planner expects ``queryset`` to return (EXPLAIN, no execution)."""
    plan = queryset.order_by().explain(format="json")
    return int(json.loads(plan)[0]["Plan"]["Plan Rows"])


def rows_count(queryset: QuerySet[Any], *, exact_max: int = EXACT_COUNT_MAX) -> tuple[int, bool]:
    """``(count, exact)``: exact when the planner expects at most ``exact_max`` rows (a count that
    stops there, so an underestimate costs no more), else the planner's estimate. The estimate
    alone is too rough for small results: a filter the statistics misjudge would show three rows
    as 1,700, or (Django shows everything when the count fits one page) 500,000 rows as three."""
    unordered = queryset.order_by()
    estimate = rows_estimate(unordered)
    if estimate <= exact_max:
        bounded = unordered.values("pk")[: exact_max + 1].count()
        if bounded <= exact_max:
            return bounded, True
    return max(estimate, exact_max + 1), False


def distinct_values(model: type[models.Model], field: str, *, limit: int = 100) -> list[Any]:
    """The distinct non-null values of ``field``, by a "loose index scan": one index probe per
    value (a recursive query over an index that leads with the column), not a scan of the table."""
    table = connection.ops.quote_name(model._meta.db_table)
    column = connection.ops.quote_name(model._meta.get_field(field).column)  # type: ignore[union-attr,arg-type]
    sql = f"""
        WITH RECURSIVE found(value, n) AS (
            (SELECT {column}, 1 FROM {table} WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)
            UNION ALL
            SELECT (SELECT {column} FROM {table} WHERE {column} > found.value ORDER BY {column} LIMIT 1), n + 1
            FROM found WHERE found.value IS NOT NULL AND n < %s
        )
        SELECT value FROM found WHERE value IS NOT NULL
    """  # noqa: S608 - names from the model's metadata, quoted; the limit is a parameter
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


def date_range_q(field: str, *, since: date | None = None, until: date | None = None) -> Q:
    """``field`` on or after the day ``since`` and on or before the day ``until`` (local days)."""
    zone = timezone.get_current_timezone()
    condition = Q()
    if since:
        condition &= Q(**{f"{field}__gte": datetime.combine(since, time.min, zone)})
    if until:
        condition &= Q(**{f"{field}__lt": datetime.combine(until + timedelta(days=1), time.min, zone)})
    return condition


@functools.cache
def boolean_icon(value: bool | None) -> SafeString:
    """The admin's yes/no icon, built once: Django builds it (a static() lookup) per row and column."""
    icon = {True: "yes", False: "no", None: "unknown"}[value]
    return format_html('<img src="{}" alt="{}">', static(f"admin/img/icon-{icon}.svg"), value)


# --- Keyset pages -------------------------------------------------------------------------------


def _ordering(queryset: QuerySet[Any]) -> list[tuple[str, bool]] | None:
    """The queryset's ordering as ``(field attname, descending)``, or None when a term is not a
    plain column of the model (an expression, a related field): those pages use OFFSET."""
    terms = list(queryset.query.order_by) or list(queryset.model._meta.ordering)
    ordering = []
    for term in terms:
        if not isinstance(term, str):
            return None
        descending = term.startswith("-")
        name = term.lstrip("-")
        if name == "pk":
            name = queryset.model._meta.pk.name
        try:
            field = queryset.model._meta.get_field(name)
        except Exception:  # noqa: BLE001 - a lookup path or annotation: no keyset for it
            return None
        if not getattr(field, "concrete", False) or field.is_relation:
            return None
        ordering.append((field.attname, descending))
    return ordering or None


class _CursorEncoder(DjangoJSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()  # to the microsecond (DjangoJSONEncoder keeps milliseconds)
        return super().default(o)


def cursor_encode(values: list[Any]) -> str:
    raw = json.dumps(values, cls=_CursorEncoder, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(queryset: QuerySet[Any], ordering: list[tuple[str, bool]], cursor: str) -> list[Any] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(ordering):
            return None
        fields = {field.attname: field for field in queryset.model._meta.concrete_fields}
        return [fields[name].to_python(value) for (name, _), value in zip(ordering, values, strict=True)]
    except (ValueError, TypeError, KeyError, Exception):  # noqa: BLE001 - a bad cursor starts from the top
        return None


def keyset_after(queryset: QuerySet[Any], ordering: list[tuple[str, bool]], values: list[Any]) -> QuerySet[Any]:
    """The rows after ``values`` in ``ordering``. The first column's inclusive bound is written out
    separately so the planner reads it as an index range (the OR alone would filter from the top)."""
    first, first_descending = ordering[0]
    bound = Q(**{f"{first}__{'lte' if first_descending else 'gte'}": values[0]})
    after = Q()
    for i, (name, descending) in enumerate(ordering):
        step = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[i]})
        for j in range(i):
            step &= Q(**{ordering[j][0]: values[j]})
        after |= step
    return queryset.filter(bound, after)


class KeysetPaginator(Paginator):  # type: ignore[type-arg]
    """Pages of a large changelist: an estimated count, and the page after a cursor when the
    request has one (``?after=``), else Django's numbered page (OFFSET; fine near the top)."""

    def __init__(self, object_list: QuerySet[Any], per_page: int, *, cursor: str | None = None, **kwargs: Any):
        super().__init__(object_list, per_page, **kwargs)
        self.queryset = object_list
        self.cursor = cursor
        self.ordering = _ordering(object_list)
        self.next_cursor: str | None = None
        self.count_exact = True

    @cached_property
    def count(self) -> int:
        count, self.count_exact = rows_count(self.queryset)
        return count

    def page(self, number: Any) -> Page:  # type: ignore[type-arg]
        values = None
        if self.cursor and self.ordering:
            values = _cursor_decode(self.queryset, self.ordering, self.cursor)
        if values is None or any(value is None for value in values):
            page = super().page(number)
            rows = list(page.object_list)
            more = page.has_next()
        else:
            fetched = list(keyset_after(self.queryset, self.ordering or [], values)[: self.per_page + 1])
            rows, more = fetched[: self.per_page], len(fetched) > self.per_page
            page = Page(rows, 1, self)
        page.object_list = rows
        if more and rows and self.ordering:
            self.next_cursor = cursor_encode([getattr(rows[-1], name) for name, _ in self.ordering])
        return page


class KeysetCursorFilter(admin.SimpleListFilter):
    """Claims the ``after`` parameter for the paginator (the changelist would read an unknown
    parameter as a field lookup); shows nothing and filters nothing itself."""

    title = "page"
    parameter_name = CURSOR_VAR

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset


class DateRangeFilter(admin.ListFilter):
    """``since`` and ``until`` (days, inclusive) on ``field_name``: a range on an index, where
    ``date_hierarchy`` sorts every timestamp of the table on each view to draw its links."""

    template = "admin/date_range_filter.html"
    field_name = "timestamp"
    title = "date"
    since_param = "since"
    until_param = "until"

    def __init__(self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in (self.since_param, self.until_param):
            if name in params:
                value = params.pop(name)
                self.used_parameters[name] = value[-1] if isinstance(value, list) else value
        self.request = request

    def _day(self, name: str) -> Any:
        value = self.used_parameters.get(name)
        return parse_date(str(value)) if value else None

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [self.since_param, self.until_param]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        try:
            since, until = self._day(self.since_param), self._day(self.until_param)
        except ValueError:
            return queryset
        return queryset.filter(date_range_q(self.field_name, since=since, until=until))

    def choices(self, changelist: ChangeList) -> Any:
        keep = {self.since_param, self.until_param, PAGE_VAR, CURSOR_VAR}
        yield {
            "since": self.used_parameters.get(self.since_param, ""),
            "until": self.used_parameters.get(self.until_param, ""),
            "since_param": self.since_param,
            "until_param": self.until_param,
            "hidden": [
                (name, value) for name, values in self.request.GET.lists() if name not in keep for value in values
            ],
            "clear": changelist.get_query_string(remove=[self.since_param, self.until_param, PAGE_VAR, CURSOR_VAR]),
        }


class LargeTableAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A changelist whose cost does not grow with its table (see the module docstring). Put
    ``DateRangeFilter`` subclasses in ``list_filter`` instead of ``date_hierarchy``; sort only by
    indexed columns (``sortable_by``)."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    change_list_template = "admin/large_table_change_list.html"

    def get_list_filter(self, request: HttpRequest) -> Any:
        return (*super().get_list_filter(request), KeysetCursorFilter)

    def action_checkbox(self, obj: Any) -> SafeString:
        # The input Django renders through the form-widget templates, written out: a template
        # render per row took 40% of a 100-row page's time.
        label = gettext("Select this object for an action - {}").format(obj)
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            label,
        )

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> KeysetPaginator:
        return KeysetPaginator(
            queryset,
            per_page,
            cursor=request.GET.get(CURSOR_VAR),
            orphans=orphans,
            allow_empty_first_page=allow_empty_first_page,
        )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            context["keyset"] = keyset_links(context["cl"])
        return response


def keyset_links(cl: ChangeList) -> dict[str, Any]:
    """The links under a large changelist: first, next (after the last row shown), last (the
    first page in the opposite order), and the count, said to be approximate when it is."""
    paginator = cl.paginator
    drop = [PAGE_VAR, CURSOR_VAR]
    links: dict[str, Any] = {
        "count": cl.result_count,
        "count_label": f"{cl.result_count:,}",
        "exact": getattr(paginator, "count_exact", True),
        "first": cl.get_query_string(remove=drop) if (CURSOR_VAR in cl.params or cl.page_num > 1) else None,
        "next": None,
        "last": None,
    }
    next_cursor = getattr(paginator, "next_cursor", None)
    if next_cursor:
        links["next"] = cl.get_query_string({CURSOR_VAR: next_cursor}, remove=[PAGE_VAR])
    columns = cl.get_ordering_field_columns()
    if columns and cl.multi_page:
        index, direction = next(iter(columns.items()))
        flipped = str(index) if direction == "desc" else f"-{index}"
        links["last"] = cl.get_query_string({ORDER_VAR: flipped}, remove=drop)
    return links
