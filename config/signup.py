"""An organisation signs up: tenant, schema, owner account, membership, subscription and API token
in one go. The use case spans tenants and billing, so it sits above both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django_tenants.utils import get_public_schema_name, schema_context
from rest_framework.authtoken.models import Token

from billing.models import Plan, Subscription
from billing.selectors import plan_is_offered
from billing.services import (
    CheckoutStarted,
    billing_enabled,
    checkout_session_start,
    checkout_start,
    subscription_start,
)
from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.login_lockout import lockout_message, lockout_seconds, login_locked_out
from tenants.models import Membership, Tenant, tenant_url
from tenants.services.provisioning import provisioning_lock, tenant_provision, tenant_template_ensure_once
from tenants.services.status import tenant_reactivate
from tenants.validators import schema_name_for, validate_subdomain


@dataclass(frozen=True)
class SignupResult:
    tenant: Tenant
    user: User
    token: str
    checkout_url: str | None
    note: str | None = None


def _field_error(field: str, message: str, code: str) -> ApplicationError:
    return ApplicationError(message, code=code, status=400, extra={"fields": {field: [message]}})


def _plan_for_signup(slug: str) -> Plan:
    plan = Plan.objects.filter(slug=slug, is_public=True).first()
    if plan is None:
        raise _field_error("plan", f"Unknown plan '{slug}'.", "invalid_plan")
    if plan.is_paid and billing_enabled() and not plan_is_offered(plan):
        # Not offered (no Stripe price): the customer is told to choose another, the operator admin warns.
        raise _field_error("plan", f"The {plan.name} plan is not available; choose another plan.", "plan_unavailable")
    return plan


def _password_matches(*, user: User, password: str, request: Any) -> bool:
    """Whether ``password`` is ``user``'s. With a request it is a login attempt like any other:
    django-axes counts a failure and refuses (429) a locked-out client or account."""
    if request is None:  # `up`'s bootstrap, not a client
        return user.check_password(password)
    if authenticate(request, username=user.email, password=password) is not None:
        return True
    if login_locked_out(request):
        raise ApplicationError(
            lockout_message(), code="throttled", status=429, extra={"retry_after": lockout_seconds()}
        )
    return False


def _owner_account(*, email: str, password: str, name: str, request: Any) -> User:
    existing = User.objects.filter(email__iexact=email).first()
    if existing is not None:
        # An existing account may start another organisation, but only with its own password.
        if not _password_matches(user=existing, password=password, request=request):
            raise _field_error("email", "An account with this e-mail exists; sign up with its password.", "email_taken")
        return existing
    user = User(email=email.lower(), full_name=name)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise _field_error("password", " ".join(exc.messages), "weak_password") from exc
    user.set_password(password)
    user.save()
    return user


def _initial_status(plan: Plan) -> tuple[str, str | None]:
    if not plan.is_paid:
        return Tenant.Status.ACTIVE, None
    if billing_enabled():
        return Tenant.Status.PENDING_PAYMENT, None
    if settings.DEBUG:
        return Tenant.Status.ACTIVE, "Stripe is not configured; the paid plan is active without payment (DEBUG)."
    raise _field_error(
        "plan", "Paid plans are unavailable: billing is not configured on this server.", "billing_unavailable"
    )


def tenant_signup(
    *, organisation: str, subdomain: str, email: str, password: str, plan: str, name: str = "", request: Any = None
) -> SignupResult:
    """Sign an organisation up; raises ApplicationError (400; 429 locked out) for any refusal and
    leaves nothing behind.

    ``request`` is the client's: a password given for an existing account is checked as a login
    (counted by the lockout). A taken subdomain is refused before any account is looked at, so
    that answer says nothing about the e-mail or the password."""
    subdomain = subdomain.strip().lower()
    organisation, email = organisation.strip(), email.strip()
    try:
        validate_subdomain(subdomain)
    except ValidationError as exc:
        raise _field_error("subdomain", exc.messages[0], exc.code or "invalid_subdomain") from exc
    chosen_plan = _plan_for_signup(plan)
    pending = Tenant.objects.filter(subdomain=subdomain, status=Tenant.Status.PENDING_PAYMENT).first()
    if pending is not None:
        return _signup_resume(tenant=pending, email=email, password=password, plan=chosen_plan, request=request)
    status, note = _initial_status(chosen_plan)
    tenant_template_ensure_once()
    with schema_context(get_public_schema_name()):
        checkout = None
        if status == Tenant.Status.PENDING_PAYMENT:
            # Stripe first, outside our transaction: if it fails nothing is stored; if our
            # transaction fails afterwards, an unpaid Checkout Session simply expires.
            checkout = _checkout_for_signup(
                organisation=organisation, subdomain=subdomain, email=email, plan=chosen_plan
            )
        try:
            with transaction.atomic():
                result = _signup_in_transaction(
                    organisation=organisation,
                    subdomain=subdomain,
                    email=email,
                    password=password,
                    name=name.strip(),
                    plan=chosen_plan,
                    status=status,
                    note=note,
                    checkout=checkout,
                    request=request,
                )
        except IntegrityError as exc:
            # Backstop for a race the advisory lock did not cover (e.g. the same e-mail twice).
            raise _field_error(
                "subdomain", "This organisation or account was just created; try again.", "conflict"
            ) from exc
    return result


def _signup_resume(*, tenant: Tenant, email: str, password: str, plan: Plan, request: Any) -> SignupResult:
    """The same person signs up again for a workspace that never got paid: a fresh Checkout
    (or, having picked a free plan now, the workspace opens at once). Anyone else finds it taken."""
    owner = (
        Membership.objects.select_related("user")
        .for_tenant(tenant)
        .filter(role=Membership.Role.OWNER, user__email__iexact=email)
        .first()
    )
    if owner is None or not _password_matches(user=owner.user, password=password, request=request):
        raise _field_error("subdomain", f"The subdomain '{tenant.subdomain}' is already taken.", "subdomain_taken")
    user = owner.user
    token, _ = Token.objects.get_or_create(user=user)
    subscription = Subscription.objects.get(tenant=tenant)
    if subscription.plan_id != plan.pk:
        subscription.plan = plan
        subscription.save(update_fields=["plan", "updated"])
    if not plan.is_paid:
        tenant_reactivate(tenant=tenant)
        return SignupResult(tenant=tenant, user=user, token=token.key, checkout_url=None)
    checkout_url = checkout_session_start(tenant=tenant, user=user)
    return SignupResult(tenant=tenant, user=user, token=token.key, checkout_url=checkout_url, note="Signup resumed.")


def _checkout_for_signup(*, organisation: str, subdomain: str, email: str, plan: Plan) -> CheckoutStarted:
    _subdomain_free_check(subdomain)
    return checkout_start(
        subdomain=subdomain, tenant_url=tenant_url(subdomain), email=email, organisation=organisation, plan=plan
    )


def _signup_in_transaction(
    *,
    organisation: str,
    subdomain: str,
    email: str,
    password: str,
    name: str,
    plan: Plan,
    status: str,
    note: str | None,
    checkout: CheckoutStarted | None,
    request: Any,
) -> SignupResult:
    # Taken first, so the checks below see a rival signup's committed rows.
    provisioning_lock()
    _subdomain_free_check(subdomain)
    user = _owner_account(email=email, password=password, name=name, request=request)
    tenant = tenant_provision(
        name=organisation, subdomain=subdomain, schema_name=schema_name_for(subdomain), status=status
    )
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.OWNER)
    token, _ = Token.objects.get_or_create(user=user)
    subscription_start(
        tenant=tenant,
        plan=plan,
        customer_id=checkout.customer_id if checkout else "",
        checkout_session_id=checkout.session_id if checkout else "",
    )
    checkout_url = checkout.url if checkout else None
    return SignupResult(tenant=tenant, user=user, token=token.key, checkout_url=checkout_url, note=note)


def _subdomain_free_check(subdomain: str) -> None:
    # The schema name follows from the subdomain (schema_name_for), so one lookup covers both.
    if Tenant.objects.filter(Q(subdomain=subdomain) | Q(schema_name=schema_name_for(subdomain))).exists():
        raise _field_error("subdomain", f"The subdomain '{subdomain}' is already taken.", "subdomain_taken")
