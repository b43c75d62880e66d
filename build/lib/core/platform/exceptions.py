"""The one domain exception and its translation into Strata's JSON error shape."""

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
