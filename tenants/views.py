"""Public-site pages: the landing page and the signup form (which posts to /api/signup/)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from billing.models import Plan


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/home.html", {"plans": Plan.objects.filter(is_public=True)})


def signup_page(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/signup.html", {"plans": Plan.objects.filter(is_public=True)})
