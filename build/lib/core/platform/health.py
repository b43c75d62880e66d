"""Health probes. Liveness (``/healthz``) never touches the database, so a database blip does not
make an orchestrator restart every process; readiness checks what serving needs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

LIVENESS_PATH = "/healthz"


class LivenessMiddleware:
    """Answers ``/healthz`` before the tenant middleware looks anything up."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == LIVENESS_PATH:
            return JsonResponse({"status": "ok"})
        return self.get_response(request)


def database_check() -> dict[str, Any]:
    """One round trip to PostgreSQL and the pgvector version, or the error's class name."""
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any database failure is reported, not raised
        return {"ok": False, "error": exc.__class__.__name__}
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return {"ok": True, "latency_ms": latency_ms, "pgvector": row[0] if row else None}
