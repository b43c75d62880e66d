"""Billing URLs on the public host."""

from django.urls import path

from billing.api import PlanListApi

urlpatterns = [
    path("plans/", PlanListApi.as_view(), name="plans"),
]
