"""The API's page numbers (its own module: DRF imports the pagination class while loading views)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, pagination
from rest_framework.request import Request


class PageNumberPagination(pagination.PageNumberPagination):
    """DRF's page numbers, held to what the schema says: ``page`` is a positive integer. DRF would
    also read an empty value as page 1 and "last" as the last page."""

    last_page_strings = ()

    def get_page_number(self, request: Request, paginator: Any) -> Any:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and not raw.isdigit():
            raise exceptions.NotFound(self.invalid_page_message.format(page_number=raw, message="not a number"))
        return super().get_page_number(request, paginator)
