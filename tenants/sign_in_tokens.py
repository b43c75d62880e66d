"""Signed tokens that name a person and the workspace they are for: the one place the sign-in
links and steps between a password (or another workspace) and a session are made and checked.

A token carries the person, the workspace, when it was issued and a fingerprint of the person's
credentials, so a new password or "sign out everywhere" voids it. A one-time token's fingerprint
also holds the person's last sign-in: ``spend`` (or any sign-in) moves it, which voids every token
issued before. Three uses:

- the welcome link that signs a new organisation's owner in on its host (tenants.welcome);
- the hand-off that carries a person to another of their workspaces (tenants.switch);
- the pending step between a correct password and the second factor (tenants.mfa; not one-time:
  the code step may be retried until the token expires).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.utils import timezone
from django.utils.crypto import salted_hmac

from core.models import User


class TokenInvalid(Exception):
    """Forged, for another workspace, or voided by a sign-in, a new password or a signing-out."""


class TokenExpired(TokenInvalid):
    """Genuine, but older than the token's ``max_age``."""


@dataclass(frozen=True)
class SignInTokens:
    salt: str
    one_time: bool

    def issue(self, *, user: User, tenant_id: int, at: dt.datetime | None = None, **extra: Any) -> str:
        """A token for ``user`` on workspace ``tenant_id`` (``at``: when it counts as issued;
        ``extra``: more the caller reads back, JSON-able)."""
        issued = at or timezone.now()
        payload = {"u": user.pk, "t": tenant_id, "f": self._fingerprint(user), "at": int(issued.timestamp())}
        return signing.Signer(salt=self.salt).sign_object({**extra, **payload})

    def read(self, *, token: str, tenant_id: int, max_age: int, lock: bool = False) -> tuple[User, dict[str, Any]]:
        """The active person ``token`` names on ``tenant_id`` and what it carries, or TokenInvalid /
        TokenExpired. ``lock`` takes the person's row for update (inside the caller's transaction),
        so that of two concurrent uses of a one-time token the second sees it spent."""
        try:
            data = signing.Signer(salt=self.salt).unsign_object(token or "")
        except signing.BadSignature:
            raise TokenInvalid from None
        if not isinstance(data, dict) or data.get("t") != tenant_id:
            raise TokenInvalid
        if not isinstance(data.get("u"), int) or not isinstance(data.get("at"), int):
            raise TokenInvalid
        if not 0 <= timezone.now().timestamp() - data["at"] <= max_age:
            raise TokenExpired
        users = User.objects.select_for_update() if lock else User.objects
        user = users.filter(pk=data["u"], is_active=True).first()
        if user is None or data.get("f") != self._fingerprint(user):
            raise TokenInvalid
        return user, data

    def spend(self, user: User) -> None:
        """Void every one-time token of ``user`` issued so far (a sign-in does the same)."""
        user.last_login = timezone.now()
        user.save(update_fields=["last_login"])

    def _fingerprint(self, user: User) -> str:
        # The session hash changes with the password and with "sign out everywhere"; last_login (to
        # the microsecond) with every sign-in, which spends one-time tokens.
        value = user.get_session_auth_hash()
        if self.one_time:
            value += f":{user.last_login.isoformat() if user.last_login else ''}"
        return salted_hmac(self.salt, value, algorithm="sha256").hexdigest()[:32]
