"""Web pages of a tenant host: log in, documents (upload, status, search), chat, usage. The pages
are Django templates with a little JavaScript that calls the same API and WebSocket as any client."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenants.decorators import member_required
from tenants.selectors import membership_get


class MemberLoginForm(AuthenticationForm):
    """Only members of the host's tenant log in here."""

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        tenant = getattr(self.request, "tenant", None)
        if tenant is None or membership_get(user=user, tenant=tenant) is None:
            raise forms.ValidationError("You are not a member of this organisation.", code="not_a_member")


class LoginView(auth_views.LoginView):
    template_name = "ai/login.html"
    authentication_form = MemberLoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "/login/"


@member_required
def documents_page(request: HttpRequest) -> HttpResponse:
    return render(request, "ai/documents.html", {"page": "documents"})


@member_required
def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "ai/chat.html", {"page": "chat"})


@member_required
def usage_page(request: HttpRequest) -> HttpResponse:
    return render(request, "ai/usage.html", {"page": "usage"})
