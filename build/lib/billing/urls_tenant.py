"""Billing URLs on a tenant host."""

from django.urls import path

from billing.api import CheckoutApi, PortalApi, UsageApi

urlpatterns = [
    path("usage/", UsageApi.as_view(), name="usage"),
    path("billing/portal/", PortalApi.as_view(), name="billing-portal"),
    path("billing/checkout/", CheckoutApi.as_view(), name="billing-checkout"),
]
