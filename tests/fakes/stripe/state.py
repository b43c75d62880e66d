"""What the fake remembers: every resource's objects, the request log and the failure switches, all
behind one lock (the HTTP server answers on many threads). Resources are mixins over this class."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from tests.fakes.stripe.wire import Json, RecordedRequest, Reply


class StripeState:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reset()

    @property
    def base_url(self) -> str:
        """Where the fake listens (hosted pages link to it); the server provides it."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all objects, recorded requests and failure switches."""
        with self._lock:
            self.requests: list[RecordedRequest] = []
            self.customers: dict[str, Json] = {}
            self.checkout_sessions: dict[str, Json] = {}
            self.portal_sessions: dict[str, Json] = {}
            self.subscriptions: dict[str, Json] = {}
            self.events: list[Json] = []
            self.meter_events: list[Json] = []
            self.meter_event_adjustments: list[Json] = []
            self.webhook_deliveries: list[tuple[str, int]] = []
            self.fail_next: list[int] = []
            self.fail_routes: str | Sequence[str] | None = None
            self.outage: bool = False
            self.outage_status: int = 503
            self.should_retry_header: bool | None = None
            self.latency: float = 0.0
            # Prices the portal offers when the customer changes plan: [{"price": id, "name": label}].
            self.portal_prices: list[Json] = []
            self._portal_tokens: dict[str, str] = {}
            self._line_items: dict[str, list[Json]] = {}
            self._subscription_metadata: dict[str, Json] = {}
            self._identifiers: set[str] = set()
            self._idempotent: dict[tuple[str, str, str, str], tuple[str, Reply]] = {}

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]
