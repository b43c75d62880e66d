"""``GET /api/audit/``: the tenant's audit log for its owners and admins, a page at a time, or the
whole (filtered) log streamed as JSON Lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from core.platform.api import IsTenantAdmin, TenantAPIView
from core.platform.schema import error_responses
from tenants.audit.models import Action
from tenants.audit.selectors import AuditFilters, audit_entries, audit_export, audit_page, entry_data
from tenants.audit.serializers import AuditPageSerializer, AuditQuerySerializer
from tenants.audit.services import audit_record

CSV_COLUMNS = [
    "id",
    "at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target",
    "ip",
    "changes",
    "prev_hash",
    "hash",
]


def _jsonl(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _csv_safe(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet; labels and targets are user-typed.
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@") else value


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().encode()


def _csv(row: dict[str, Any]) -> bytes:
    actor = row["actor"]
    changes = json.dumps(row["changes"], ensure_ascii=False) if row["changes"] is not None else ""
    values = [row["id"], row["at"], actor["type"], actor["id"], actor["label"], row["action"], row["target"]]
    return _csv_line([_csv_safe(value) for value in values] + [row["ip"] or "", changes, row["prev_hash"], row["hash"]])


class AuditApi(TenantAPIView):
    """Owners and admins only (people, not API keys): ``{results, next}``, newest first."""

    membership_permission = IsTenantAdmin

    @extend_schema(
        parameters=[AuditQuerySerializer],
        responses={
            (200, "application/json"): AuditPageSerializer,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(400),
        },
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        query = AuditQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        options = query.validated_data
        filters = AuditFilters(**{name: options.get(name, "") for name in ("actor", "action", "since", "until")})
        entries = audit_entries(tenant_id=request.tenant.pk, filters=filters)  # type: ignore[attr-defined]
        if options["format"] != "json":
            return self._export(request, entries, options["format"], filters)
        rows, next_cursor = audit_page(entries, cursor=options.get("cursor"), size=options["limit"])
        here = request.build_absolute_uri()
        next_url = replace_query_param(here, "cursor", next_cursor) if next_cursor is not None else None
        return Response({"results": [entry_data(row) for row in rows], "next": next_url})

    def _export(self, request: Request, entries: Any, export: str, filters: AuditFilters) -> StreamingHttpResponse:
        tenant = request.tenant  # type: ignore[attr-defined]
        audit_record(
            tenant=tenant,
            action=Action.AUDIT_EXPORTED,
            request=request,
            changes={"format": export, "filters": filters.as_query()},
        )
        if export == "csv":
            body = audit_export(entries, encode=_csv, header=_csv_line(CSV_COLUMNS))
            content_type = "text/csv; charset=utf-8"
        else:
            body = audit_export(entries, encode=_jsonl)
            content_type = "application/x-ndjson"
        response = StreamingHttpResponse(body, content_type=content_type)
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="strata-audit-{tenant.subdomain}-{stamp}.{export}"'
        response["Cache-Control"] = "no-store"
        return response
