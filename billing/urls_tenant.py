"""Billing URLs on a tenant host."""

from django.urls import path

from billing.api import UsageApi

urlpatterns = [
    path("usage/", UsageApi.as_view(), name="usage"),
]
