"""Pages for teams and accounts: accept an invitation, members and invitations, API keys, account
settings, password reset (tenant and public hosts), finding one's workspaces (public host).

Plain HTML forms that post back to these views, which call the same services as the API; the
only JavaScript (confirmations, copying a new key) is in static/tenants/team.js.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django import forms
from django.contrib import messages
from django.contrib.auth import login, logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters

from core.models import User
from core.platform.exceptions import ApplicationError
from core.platform.validators import ascii_integer
from tenants import selectors
from tenants.decorators import member_required
from tenants.mfa.views import mfa_challenge_for
from tenants.models import ApiKey, Membership
from tenants.services.accounts import (
    email_change_confirm,
    email_change_request,
    password_reset_complete,
    password_reset_request,
    password_reset_tokens,
    password_set,
    user_name_change,
    user_sign_out_everywhere,
    workspaces_find_request,
)
from tenants.services.api_keys import api_key_create, api_key_revoke
from tenants.services.invitations import (
    invitation_accept,
    invitation_account,
    invitation_create,
    invitation_for_token,
    invitation_resend,
    invitation_revoke,
    invitation_usable_check,
)
from tenants.services.members import membership_leave, membership_remove, membership_role_change
from tenants.throttles import AccountLinkThrottle, AccountMailThrottle, address_throttle_check


def _tenant(request: HttpRequest) -> Any:
    tenant = getattr(request, "tenant", None)
    if tenant is None or tenant.is_public:
        raise Http404
    return tenant


def _membership(request: HttpRequest) -> Membership:
    membership = selectors.membership_get(user=request.user, tenant=_tenant(request))  # type: ignore[arg-type]
    if membership is None:  # member_required ran first; a removal in between lands here
        raise PermissionDenied
    return membership


def _int(value: str | None) -> int:
    number = ascii_integer(value)
    if number is None:
        raise ApplicationError("Bad request.", code="bad_request", status=400)
    return number


def _throttled(request: HttpRequest, throttle: Any, template: str, context: dict[str, Any]) -> HttpResponse | None:
    try:
        address_throttle_check(request, throttle)
    except ApplicationError as exc:
        response = render(request, template, {**context, "error": exc.message}, status=exc.status)
        response["Retry-After"] = str(exc.extra.get("retry_after", 60))
        return response
    return None


def _post_action(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A form post that calls one service: its refusal becomes a message on the page it came from."""

    @wraps(view)
    def run(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            return redirect(request.path)

    return run


# --- Accepting an invitation (anyone with the link) ----------------------------------------------


class NewAccountForm(forms.Form):
    name = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=128)
    password2 = forms.CharField(widget=forms.PasswordInput, strip=False, max_length=128, label="Password again")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("password") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data


@sensitive_post_parameters("password", "password2")
@never_cache
def invitation_accept_page(request: HttpRequest, token: str) -> HttpResponse:
    tenant = _tenant(request)
    try:
        invitation = invitation_usable_check(invitation_for_token(tenant=tenant, token=token))
    except ApplicationError as exc:
        return render(request, "tenants/link_invalid.html", {"message": exc.message}, status=exc.status)
    account = invitation_account(invitation=invitation)
    signed_in = request.user if request.user.is_authenticated else None
    context: dict[str, Any] = {"invitation": invitation, "account": account, "signed_in": signed_in}
    form = NewAccountForm(request.POST or None) if account is None else None
    if request.method == "POST":
        limited = _throttled(request, AccountLinkThrottle, "tenants/invitation_accept.html", {**context, "form": form})
        if limited:
            return limited
        if form is not None and not form.is_valid():
            return render(request, "tenants/invitation_accept.html", {**context, "form": form}, status=400)
        try:
            accepted = invitation_accept(
                tenant=tenant,
                token=token,
                user=signed_in,
                name=form.cleaned_data["name"] if form else "",
                password=(form.cleaned_data["password"] if form else request.POST.get("password", "")),
            )
        except ApplicationError as exc:
            return render(
                request, "tenants/invitation_accept.html", {**context, "form": form, "error": exc.message}, status=400
            )
        if signed_in is None:
            # Joined with the account's password: with two-factor sign-in on, the code comes first.
            challenge = mfa_challenge_for(request, user=accepted.user, next_url="/")
            if challenge is not None:
                return challenge
            login(request, accepted.user, backend="tenants.backends.TenantMemberBackend")
        messages.success(request, f"Welcome to {tenant.name}.")
        return redirect("/")
    return render(request, "tenants/invitation_accept.html", {**context, "form": form})


# --- Members and invitations --------------------------------------------------------------------


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


@member_required
@_post_action
def members_page(request: HttpRequest) -> HttpResponse:
    tenant, membership = _tenant(request), _membership(request)
    if request.method == "POST":
        if not membership.can_administer:
            raise PermissionDenied
        action, actor = request.POST.get("action"), request.user
        if action == "invite":
            form = InviteForm(request.POST)
            if not form.is_valid():
                raise ApplicationError(" ".join(str(e) for errors in form.errors.values() for e in errors))
            invitation = invitation_create(tenant=tenant, actor=actor, **form.cleaned_data)  # type: ignore[arg-type]
            messages.success(request, f"Invitation sent to {invitation.email}.")
        elif action == "resend":
            invitation = invitation_resend(tenant=tenant, actor=actor, invitation_id=_int(request.POST.get("id")))  # type: ignore[arg-type]
            messages.success(request, f"A new link was sent to {invitation.email}.")
        elif action == "revoke":
            invitation_revoke(tenant=tenant, actor=actor, invitation_id=_int(request.POST.get("id")))  # type: ignore[arg-type]
            messages.success(request, "Invitation revoked.")
        elif action == "role":
            changed = membership_role_change(
                tenant=tenant,
                actor=actor,  # type: ignore[arg-type]
                membership_id=_int(request.POST.get("id")),
                role=request.POST.get("role", ""),
            )
            messages.success(request, f"{changed.user.email} is now {changed.get_role_display().lower()}.")
        elif action == "remove":
            membership_remove(tenant=tenant, actor=actor, membership_id=_int(request.POST.get("id")))  # type: ignore[arg-type]
            messages.success(request, "Member removed.")
        else:
            raise ApplicationError("Unknown action.")
        return redirect(request.path)
    grantable = [
        choice
        for choice in Membership.Role.choices
        if membership.role == Membership.Role.OWNER or choice[0] != Membership.Role.OWNER
    ]
    return render(
        request,
        "tenants/members.html",
        {
            "page": "members",
            "membership": membership,
            "members": selectors.members_list(tenant=tenant),
            "invitations": selectors.invitations_open(tenant=tenant) if membership.can_administer else [],
            "roles": grantable,
        },
    )


# --- API keys ----------------------------------------------------------------------------------


@member_required
@_post_action
def api_keys_page(request: HttpRequest) -> HttpResponse:
    tenant, membership = _tenant(request), _membership(request)
    if not membership.can_administer:
        raise PermissionDenied
    created = None
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            api_key_revoke(tenant=tenant, api_key_id=_int(request.POST.get("id")), actor=request.user)  # type: ignore[arg-type]
            messages.success(request, "API key revoked.")
            return redirect(request.path)
        created, key = api_key_create(
            tenant=tenant,
            created_by=request.user,  # type: ignore[arg-type]
            name=request.POST.get("name", ""),
            scope=request.POST.get("scope", ""),
        )
        created.key = key  # type: ignore[attr-defined]
    response = render(
        request,
        "tenants/api_keys.html",
        {
            "page": "keys",
            "membership": membership,
            "keys": selectors.api_keys_list(tenant=tenant),
            "created": created,
            "scopes": ApiKey.Scope.choices,
        },
        status=201 if created else 200,
    )
    response["Cache-Control"] = "no-store"  # the new key is in this page only
    return response


# --- Account settings ----------------------------------------------------------------------------


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@member_required
@_post_action
def account_page(request: HttpRequest) -> HttpResponse:
    tenant, membership = _tenant(request), _membership(request)
    user: User = request.user  # type: ignore[assignment]
    password_form = PasswordChangeForm(user)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "name":
            user_name_change(user=user, full_name=request.POST.get("full_name", ""))
            messages.success(request, "Name saved.")
        elif action == "email":
            new_email = email_change_request(user=user, new_email=request.POST.get("email", ""), tenant=tenant)
            messages.success(
                request, f"We sent a confirmation link to {new_email}; your address changes when you open it."
            )
        elif action == "password":
            password_form = PasswordChangeForm(user, request.POST)
            if password_form.is_valid():
                password_set(user=user, password=password_form.cleaned_data["new_password1"])
                update_session_auth_hash(request, user)  # this session stays; every other one ends
                messages.success(request, "Password changed. You were signed out everywhere else.")
                return redirect(request.path)
        elif action == "signout":
            user_sign_out_everywhere(user=user)
            logout(request)
            messages.success(request, "You were signed out everywhere.")
            return redirect("/login/")
        elif action == "leave":
            membership_leave(tenant=tenant, user=user)
            logout(request)
            messages.success(request, f"You left {tenant.name}.")
            return redirect("/login/")
        else:
            raise ApplicationError("Unknown action.")
        if action != "password":
            return redirect(request.path)
    return render(
        request,
        "tenants/account.html",
        {"page": "account", "membership": membership, "password_form": password_form},
        status=400 if password_form.is_bound else 200,
    )


@never_cache
def email_change_confirm_page(request: HttpRequest, token: str) -> HttpResponse:
    _tenant(request)
    if request.method != "POST":
        # Confirming takes a click: mail scanners that open links must not change an address.
        return render(request, "tenants/email_change_confirm.html", {})
    try:
        user = email_change_confirm(token=token)
    except ApplicationError as exc:
        return render(request, "tenants/link_invalid.html", {"message": exc.message}, status=exc.status)
    messages.success(request, f"Your e-mail address is now {user.email}.")
    return redirect("/account/" if request.user.is_authenticated else "/login/")


# --- Password reset (tenant hosts and the public host) -------------------------------------------


class EmailForm(forms.Form):
    email = forms.EmailField(max_length=254)


def password_reset_page(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST or None)
    if request.method == "POST":
        limited = _throttled(request, AccountMailThrottle, "tenants/password_reset.html", {"form": form})
        if limited:
            return limited
        if form.is_valid():
            password_reset_request(email=form.cleaned_data["email"], tenant=getattr(request, "tenant", None))
            return render(request, "tenants/mail_sent.html", {"email": form.cleaned_data["email"], "reset": True})
    return render(request, "tenants/password_reset.html", {"form": form}, status=400 if form.errors else 200)


class ResetPasswordForm(SetPasswordForm):  # type: ignore[type-arg]
    """Saving through the service: the login token goes too, and other sessions end."""

    tenant: Any = None

    def save(self, commit: bool = True) -> Any:
        password_reset_complete(user=self.user, password=self.cleaned_data["new_password1"], tenant=self.tenant)
        return self.user


class PasswordResetConfirmPage(auth_views.PasswordResetConfirmView):
    form_class = ResetPasswordForm
    template_name = "tenants/password_reset_confirm.html"
    success_url = "/reset/done/"

    def dispatch(self, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The link's token holds the host it was sent for (password_reset_tokens).
        self.token_generator = password_reset_tokens(tenant=getattr(self.request, "tenant", None))
        return super().dispatch(*args, **kwargs)

    def get_form(self, form_class: Any = None) -> Any:
        form = cast(ResetPasswordForm, super().get_form(form_class))
        form.tenant = getattr(self.request, "tenant", None)
        return form

    def form_valid(self, form: Any) -> HttpResponse:
        try:
            return super().form_valid(form)
        except ApplicationError as refusal:  # the tenant enforces SSO for this person
            form.add_error(None, refusal.message)
            response = self.form_invalid(form)
            response.status_code = refusal.status
            return response


def password_reset_done_page(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/password_reset_done.html")


password_reset_urlpatterns = [
    path("password-reset/", password_reset_page, name="password-reset"),
    path("reset/done/", password_reset_done_page, name="password-reset-done"),
    path("reset/<uidb64>/<token>/", PasswordResetConfirmPage.as_view(), name="password_reset_confirm"),
]


# --- Finding one's workspaces (public host) --------------------------------------------------------


def workspaces_find_page(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST or None)
    if request.method == "POST":
        limited = _throttled(request, AccountMailThrottle, "tenants/workspaces_find.html", {"form": form})
        if limited:
            return limited
        if form.is_valid():
            workspaces_find_request(email=form.cleaned_data["email"])
            return render(request, "tenants/mail_sent.html", {"email": form.cleaned_data["email"], "reset": False})
    return render(request, "tenants/workspaces_find.html", {"form": form}, status=400 if form.errors else 200)
