"""DRF throttles keyed on the real client address (see core.platform.client)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle as DrfScopedRateThrottle

from core.platform.client import client_ip


class ScopedRateThrottle(DrfScopedRateThrottle):
    """DRF's scoped throttle, with the client address from the one helper every limit uses."""

    def get_ident(self, request: Request) -> str:
        return client_ip(request)
