"""Readiness (``/readyz``): the database answers and the embedding model is loaded and warm, so no
user waits for it. Load balancers route to a process only once it is ready."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from ai.embedding.embedders import embedder_state
from core.platform.health import database_check


def readyz(request: HttpRequest) -> JsonResponse:
    database = database_check()
    embeddings = embedder_state()
    ready = database["ok"] and embeddings["ready"]
    body = {"status": "ready" if ready else "starting", "database": database, "embeddings": embeddings}
    return JsonResponse(body, status=200 if ready else 503)
