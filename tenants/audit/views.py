"""The audit log page (``/audit/``) for a tenant's owners and admins."""

from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.platform.exceptions import ApplicationError
from tenants.audit.models import Action, ActorType, AuditEntry
from tenants.audit.selectors import AuditFilters, audit_entries, audit_page, cursor_parse
from tenants.decorators import member_required


@member_required
@require_GET
def audit_log_page(request: HttpRequest) -> HttpResponse:
    membership = request.membership  # type: ignore[attr-defined]
    if not membership.can_administer:
        raise PermissionDenied
    tenant = request.tenant  # type: ignore[attr-defined]
    filters = AuditFilters.from_query(request.GET)
    error = ""
    rows: list[AuditEntry] = []
    next_cursor: int | None = None
    try:
        entries = audit_entries(tenant_id=tenant.pk, filters=filters)
        rows, next_cursor = audit_page(entries, cursor=cursor_parse(request.GET.get("cursor")))
    except ApplicationError as exc:
        error = exc.message
    query = filters.as_query()
    context = {
        "page": "audit",
        "entries": rows,
        "filters": filters,
        "error": error,
        "actions": Action.choices,
        "actor_types": ActorType.choices,
        "next_query": urlencode({**query, "cursor": next_cursor}) if next_cursor is not None else "",
        "export_query": urlencode(query),
    }
    return render(request, "audit/audit_log.html", context)
