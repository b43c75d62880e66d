"""What every page's layout needs to know: the member's role (for the navigation) and whether
the embedding model is still loading in this process (a notice instead of a silent wait)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from ai.embedding.embedders import embedder_state


def workspace(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public:
        return {}
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {"membership": membership, "search_warming": not embedder_state()["ready"]}
