"""Sign-ins, failed sign-ins and sign-outs on a tenant's host (API, pages, tenant admin, SSO), from
Django's auth signals: every way in calls ``login()`` or ``authenticate()``, so none is missed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from tenants.audit.models import Action
from tenants.audit.services import audit_record


def _tenant(request: Any) -> Any:
    tenant = getattr(request, "tenant", None)
    return None if tenant is None or tenant.is_public else tenant


@receiver(user_logged_in, dispatch_uid="audit_login")
def login_recorded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    tenant = _tenant(request)
    if tenant is not None:
        # A sign-in that is not a password's says how (tenants.sso sets ``audit_login_changes``).
        changes = getattr(request, "audit_login_changes", None)
        audit_record(
            tenant=tenant, action=Action.LOGIN, actor=user, request=request, target=user.email, changes=changes
        )


@receiver(user_logged_out, dispatch_uid="audit_logout")
def logout_recorded(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    tenant = _tenant(request)
    if tenant is not None and user is not None:
        audit_record(tenant=tenant, action=Action.LOGOUT, actor=user, request=request, target=user.email)


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def login_failure_recorded(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    tenant = _tenant(request)
    if tenant is None:
        return
    # The address that was tried (Django has already masked the password in ``credentials``).
    tried = str(credentials.get("email") or credentials.get("username") or "")[:254]
    audit_record(tenant=tenant, action=Action.LOGIN_FAILED, request=request, actor_label=tried, target=tried)
