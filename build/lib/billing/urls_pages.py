"""Billing and usage pages on a tenant host."""

from django.urls import path

from billing import views

urlpatterns = [
    path("usage/", views.usage_page, name="usage-page"),
    path("usage/export.csv", views.usage_export, name="usage-export"),
    path("billing/", views.billing_page, name="billing-page"),
    path("billing/plan/", views.plan_change, name="billing-plan"),
    path("billing/portal/", views.billing_portal, name="billing-portal-page"),
    path("billing/pay/", views.first_payment, name="billing-pay"),
]
