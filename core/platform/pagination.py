"""The API's page numbers (its own module: DRF imports the pagination class while loading views)."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from rest_framework import exceptions, pagination
from rest_framework.request import Request


class FirstPageCountingPaginator(Paginator):  # type: ignore[type-arg]
    """Django's paginator, which reads the first page before counting: a first page shorter than
    a page is the whole list, so its length is the count (one query, not a COUNT and a list)."""

    def page(self, number: Any) -> Any:
        if str(number) != "1" or self.orphans or not self.allow_empty_first_page or "count" in self.__dict__:
            return super().page(number)
        rows = list(self.object_list[: self.per_page])
        if len(rows) < self.per_page:
            self.__dict__["count"] = len(rows)  # the cached_property's value
        return self._get_page(rows, 1, self)  # type: ignore[attr-defined]  # Django's hook, not in the stubs


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's page numbers, held to what the schema says: ``page`` is a positive integer. DRF would
    also read an empty value as page 1 and "last" as the last page."""

    django_paginator_class = FirstPageCountingPaginator
    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not raw.isdigit():
            raise exceptions.NotFound(self.invalid_page_message.format(page_number=raw, message="not a number"))
        return super().get_page_number(request, paginator)
