"""The one domain exception and its translation into Strata's JSON error shape.

Importing it loads neither Django's database layer nor the Redis client: the extraction child
(``python -m ai.ingestion.extraction``, a fresh interpreter for every uploaded file) imports this
module and nothing else of the platform, and those two were half its start-up (70 of 140 ms).
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A failure a client should see: a stable code, a message and an HTTP status.

    Services raise it; the DRF exception handler and the consumers' error frame
    turn it into ``{"error": {"code": ..., "message": ...}}``.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "bad_request",
        status: int = 400,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.extra)
        return {"error": error}


def outage_error(exc: BaseException) -> ApplicationError | None:
    """A 503 ``service_unavailable`` (with ``retry_after``) when ``exc`` says the database or the
    shared cache is unreachable or out of connections: the platform's failure, not the caller's,
    and one that passes. None for any other exception."""
    from django.conf import settings
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import RedisError

    if not isinstance(exc, OperationalError | InterfaceError | RedisError):
        return None
    return ApplicationError(
        "A service Strata needs is unavailable for a moment; try again shortly.",
        code="service_unavailable",
        status=503,
        extra={"retry_after": settings.OUTAGE_RETRY_AFTER_SECONDS},
    )
