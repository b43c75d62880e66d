"""Authentication on a tenant host: only that tenant's members get in.

Refusing non-members here, inside ``authenticate``, rather than after it, makes a non-member's
correct password indistinguishable from a wrong one on every login path (API, pages, tenant
admin): the same answer, the same one password hash, and a failure counted by the lockout.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend

from tenants.selectors import membership_get
from tenants.sso.services import sso_password_check


class TenantMemberBackend(ModelBackend):
    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.pop("email", None)
        if isinstance(username, str):
            username = username.strip().lower()  # e-mails are stored lower-case
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            return None
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.is_public or user.is_superuser:
            return user  # the public host, or a platform operator (who may enter any tenant's admin)
        if membership_get(user=user, tenant=tenant) is None:
            return None
        # Past the password check only: a tenant enforcing SSO refuses its members' and admins'
        # passwords with a clear answer (ApplicationError sso_required, 403) on every login path.
        sso_password_check(user=user, tenant=tenant)
        return user
