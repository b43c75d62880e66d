"""The second step of a sign-in as an authentication backend, so that django-axes counts a wrong
code as a failed login of that account (and refuses codes while it is locked out), exactly as
for passwords, on every path: API, login page, tenant admin."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from core.models import User
from core.platform.exceptions import ApplicationError
from tenants.mfa.services import mfa_code_verify, mfa_pending_user


class MfaCodeBackend(ModelBackend):
    """``authenticate(request, username=<e-mail>, mfa_token=..., mfa_passcode=...)``. The names
    hold "TOKEN" and "PASS" so Django leaves their values out of the failed-login signal."""

    def authenticate(  # type: ignore[override]
        self,
        request: Any,
        mfa_token: str | None = None,
        mfa_passcode: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if mfa_token is None or mfa_passcode is None:
            return None  # a password login: not ours
        try:
            user = mfa_pending_user(mfa_token=mfa_token, tenant=getattr(request, "tenant", None))
        except ApplicationError:
            return None
        tenant = getattr(request, "tenant", None)
        if tenant is not None and not tenant.is_public and not user.is_superuser and tenant.membership_of(user) is None:
            return None  # removed from the tenant since the password step
        if not self.user_can_authenticate(user) or not mfa_code_verify(user=user, code=mfa_passcode):
            return None
        return user
