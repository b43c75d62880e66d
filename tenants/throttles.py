"""Rate limits per client address for the account requests that send mail or use a link: one
budget per scope, shared by the API and the pages (both go through ``address_throttle_check``)."""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import SimpleRateThrottle

from core.platform.client import client_ip
from core.platform.exceptions import ApplicationError


class AddressThrottle(SimpleRateThrottle):
    """DRF's rate throttle keyed on the client address only (core.platform.client decides which)."""

    def get_ident(self, request: Any) -> str:
        return client_ip(request)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AccountMailThrottle(AddressThrottle):
    """Password reset, finding one's workspaces: requests that may e-mail someone."""

    scope = "account_mail"


class AccountLinkThrottle(AddressThrottle):
    """Accepting an invitation, confirming a reset, changing a password: requests that test a secret."""

    scope = "account_link"


class SsoThrottle(AddressThrottle):
    """Single sign-on starts, callbacks and SAML responses: each costs a provider round trip or a
    signature check, and an unauthenticated caller can send as many as it likes."""

    scope = "sso"


def address_throttle_check(request: Any, throttle_class: type[AddressThrottle]) -> None:
    """For page views: raise a 429 ApplicationError when the address is over the scope's rate."""
    throttle = throttle_class()
    if not throttle.allow_request(request, None):  # type: ignore[arg-type] # no view: the scope is the class
        wait = throttle.wait()
        raise ApplicationError(
            "Too many requests from your address; try again later.",
            code="throttled",
            status=429,
            extra={"retry_after": int(wait or 60)},
        )
