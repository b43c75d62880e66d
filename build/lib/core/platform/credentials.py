"""Credentials that belong to a tenant rather than to a person (tenant API keys), as the bottom
layer sees them: enough to admit one on its own tenant's host without importing the app that
stores them."""

from __future__ import annotations

from typing import Any


class TenantCredential:
    """Base of a tenant API key model.

    An authentication class that accepts a key puts it in ``request.auth`` and the key's own
    identity in ``request.user``. ``IsTenantMember`` admits it only on its own tenant's host and
    within its scope; people still pass through the membership check alone.
    """

    tenant_id: int

    @property
    def allows_write(self) -> bool:
        raise NotImplementedError


def request_credential(request: Any) -> TenantCredential | None:
    """The tenant credential a request was authenticated with, or None for a person."""
    auth = getattr(request, "auth", None)
    return auth if isinstance(auth, TenantCredential) else None
