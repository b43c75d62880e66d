"""Liveness and database health for load balancers and the README's first command."""

from __future__ import annotations

import time

from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        database = {
            "ok": True,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "pgvector": row[0] if row else None,
        }
    except Exception as exc:  # noqa: BLE001 - any database failure is reported, not raised
        database = {"ok": False, "error": exc.__class__.__name__}
    ok = database["ok"]
    return JsonResponse({"status": "ok" if ok else "error", "database": database}, status=200 if ok else 503)
