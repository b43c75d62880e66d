"""Billing URLs on the public host."""

from django.urls import path

from billing.api import PlanListApi, StripeWebhookApi

urlpatterns = [
    path("plans/", PlanListApi.as_view(), name="plans"),
    path("billing/webhook/", StripeWebhookApi.as_view(), name="stripe-webhook"),
]
