"""Billing's periodic job: an in-process scheduler thread that syncs meter events and enforces the
past-due grace period every ``BILLING_JOBS_INTERVAL_SECONDS`` while Stripe is configured.

Each ASGI process may start one; the sync's advisory lock keeps runs from overlapping across
processes, and a missed or failed tick only delays work (the outbox keeps it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection
from django_tenants.utils import get_public_schema_name, schema_context

from billing.services import billing_enabled, subscriptions_enforce_grace, usage_sync

logger = logging.getLogger(__name__)

_thread: threading.Thread | None = None
_stop = threading.Event()
_lock = threading.Lock()


def billing_jobs_run_once() -> dict[str, Any]:
    """One tick: meter sync, then the grace-period check. Returns what each did."""
    with schema_context(get_public_schema_name()):
        report = usage_sync(limit=int(getattr(settings, "BILLING_SYNC_BATCH", 2000)))
        suspended = subscriptions_enforce_grace()
    return {"sync": report, "suspended": suspended}


def _loop(interval: float) -> None:
    while not _stop.wait(interval):
        close_old_connections()
        try:
            billing_jobs_run_once()
        except Exception:
            logger.exception("billing job failed; retrying in %s s", interval)
        finally:
            # A thread's connection must not sit idle (or broken) until the next tick.
            connection.close()


def billing_jobs_start(*, interval: float | None = None) -> threading.Thread | None:
    """Start the scheduler thread once per process; does nothing when Stripe is not configured."""
    global _thread
    if not billing_enabled():
        return None
    with _lock:
        if _thread is not None and _thread.is_alive():
            return _thread
        every = float(interval if interval is not None else getattr(settings, "BILLING_JOBS_INTERVAL_SECONDS", 60))
        _stop.clear()
        _thread = threading.Thread(target=_loop, args=(every,), name="strata-billing-jobs", daemon=True)
        _thread.start()
        logger.info("billing jobs every %s s", every)
        return _thread


def billing_jobs_stop(timeout: float = 10.0) -> None:
    """Stop the scheduler thread (shutdown, tests); a tick in progress finishes first."""
    global _thread
    with _lock:
        thread, _thread = _thread, None
        _stop.set()
    if thread is not None:
        thread.join(timeout)
