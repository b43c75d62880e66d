"""Web pages of a tenant host about money and tokens: usage (chart and CSV) and billing (plan,
Checkout, the Stripe portal, the first payment of a pending signup). Thin: each calls one service
or selector; the JSON API for the same lives in billing.api."""

from __future__ import annotations

import csv
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from billing.models import Plan, Subscription
from billing.selectors import UsageReport, plan_is_offered, plans_offered, usage_report
from billing.services import (
    PORTAL_FLOWS,
    billing_enabled,
    checkout_session_start,
    plan_change_start,
    portal_session_start,
    usage_summary,
)
from core.platform.exceptions import ApplicationError
from tenants.decorators import member_required
from tenants.models import Membership, Tenant
from tenants.selectors import membership_get

FEATURE_LABELS = {"chat": "Chat", "summarise": "Summaries", "embed": "Embeddings"}


def _is_owner(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.role == Membership.Role.OWNER


def _sees_people(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.can_administer


# --- usage -------------------------------------------------------------------------------------


def usage_context(report: UsageReport, *, people: bool) -> dict[str, Any]:
    """What the usage template needs; the operator admin's per-tenant page uses it too."""
    features = [
        {"key": key, "label": FEATURE_LABELS.get(key, key.title()), **totals}
        for key, totals in sorted(report.feature_totals.items(), key=lambda item: -item[1]["tokens"])
    ]
    return {
        "report": report,
        "features": features,
        "people": report.person_totals if people else None,
        "chart": {**report.chart_data(people=people), "labels": FEATURE_LABELS},
        "remaining": max(0, report.included - report.used),
        "cost_dollars": f"{report.cost_micros / 1_000_000:,.2f}",
    }


@member_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    report = usage_report(tenant_id=request.tenant.pk)  # type: ignore[attr-defined]
    context = {"page": "usage", **usage_context(report, people=_sees_people(request))}
    return render(request, "billing/usage.html", context)


def usage_csv(report: UsageReport, *, filename: str, people: bool) -> HttpResponse:
    """The period's usage per day, feature and person as CSV (operators' admin uses it too)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(["date", "feature", "person", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "calls"])
    for row in report.rows:
        writer.writerow(
            [
                row["day"].isoformat(),
                row["feature"],
                _csv_safe(row["person"]) if people else "",
                row["input_tokens"],
                row["output_tokens"],
                row["total_tokens"],
                f"{row['cost_micros'] / 1_000_000:.6f}",
                row["calls"],
            ]
        )
    return response


def _csv_safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet; e-mail addresses may start with them.
    return f"'{value}" if value[:1] in ("=", "+", "-", "@") else value


@member_required
@require_GET
def usage_export(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    report = usage_report(tenant_id=tenant.pk)
    filename = f"strata-usage-{tenant.subdomain}-{report.period_start:%Y-%m}.csv"
    return usage_csv(report, filename=filename, people=_sees_people(request))


# --- billing -----------------------------------------------------------------------------------


@member_required
@require_GET
def billing_page(request: HttpRequest) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    subscription = Subscription.objects.select_related("plan").get(tenant=tenant)
    offered = plans_offered()
    if subscription.plan not in offered:
        offered = sorted([*offered, subscription.plan], key=lambda plan: (plan.sort_order, plan.monthly_price_cents))
    checkout = request.GET.get("checkout", "")
    if checkout == "success":
        messages.info(request, "Thank you: Stripe confirmed the payment; the plan changes as soon as Stripe tells us.")
    elif checkout == "cancelled":
        messages.warning(request, "The payment was cancelled; nothing changed.")
    if request.GET.get("changed"):
        messages.info(request, "Done in Stripe; this page shows the change as soon as Stripe tells us.")
    context = {
        "page": "billing",
        "subscription": subscription,
        "plans": offered,
        "summary": usage_summary(tenant=tenant),
        "is_owner": _is_owner(request),
        "stripe_on": billing_enabled(),
        # Without Stripe, DEBUG offers paid plans without payment (plan_is_offered): the notice says so.
        "debug_plans": not billing_enabled() and any(plan.is_paid for plan in offered),
        "stripe_customer": bool(subscription.stripe_customer_id),
        "live_subscription": bool(subscription.stripe_subscription_id)
        and subscription.status in ("active", "trialing", "past_due", "unpaid"),
        "close_grace_days": settings.TENANT_DELETE_GRACE_DAYS,
    }
    return render(request, "billing/billing.html", context)


def _owner_only(request: HttpRequest) -> HttpResponse | None:
    if _is_owner(request):
        return None
    messages.error(request, "Only owners of this organisation can change its billing.")
    return redirect("billing-page")


def _go(url: str) -> HttpResponse:
    # Stripe's hosted pages are on another host; a plain redirect is the way there.
    return HttpResponseRedirect(url)


@member_required
@require_POST
def plan_change(request: HttpRequest) -> HttpResponse:
    refused = _owner_only(request)
    if refused is not None:
        return refused
    plan = get_object_or_404(Plan, slug=request.POST.get("plan", ""))
    if not plan_is_offered(plan):
        messages.error(request, f"The {plan.name} plan is not available.")
        return redirect("billing-page")
    try:
        change = plan_change_start(tenant=request.tenant, user=request.user, plan=plan)  # type: ignore[attr-defined,arg-type]
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("billing-page")
    if change.url:
        return _go(change.url)
    messages.success(request, f"Your organisation is now on the {plan.name} plan.")
    return redirect("billing-page")


@member_required
@require_POST
def billing_portal(request: HttpRequest) -> HttpResponse:
    refused = _owner_only(request)
    if refused is not None:
        return refused
    flow = request.POST.get("flow") or None
    try:
        url = portal_session_start(tenant=request.tenant, flow=flow if flow in PORTAL_FLOWS else None)  # type: ignore[attr-defined]
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("billing-page")
    return _go(url)


@require_POST
def first_payment(request: HttpRequest) -> HttpResponse:
    """The "Complete payment" button of a pending signup: a fresh Checkout for its owner.

    Reachable while the tenant waits for payment (the status middleware lets it through), so it
    checks the membership itself instead of using member_required's page guard.
    """
    tenant: Tenant = request.tenant  # type: ignore[attr-defined]
    membership = membership_get(user=request.user, tenant=tenant) if request.user.is_authenticated else None
    if tenant.status == Tenant.Status.ACTIVE:
        return redirect("/")
    if membership is None:
        return redirect("/login/?next=/")
    if membership.role != Membership.Role.OWNER:
        return redirect("/")  # the waiting page tells members who can pay
    try:
        url = checkout_session_start(tenant=tenant, user=request.user)  # type: ignore[arg-type]
    except ApplicationError as exc:
        return render(
            request,
            "tenants/unavailable.html",
            {"tenant": tenant, "code": exc.code, "message": exc.message, "is_owner": True},
            status=exc.status,
        )
    return _go(url)
