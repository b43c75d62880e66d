"""Billing self-service as the server handles it: which plans are offered, the billing page and its
plan changes (Checkout first, the portal after), the first payment of a pending signup, resuming
an abandoned signup, releasing unpaid ones after seven days, and the operators' warnings."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django_tenants.utils import schema_exists, tenant_context

from billing.models import Subscription
from config.lifecycle import signups_unpaid_release
from config.tasks import signups_unpaid_release as pending_release
from core.platform.jobs import app
from tenants.models import Domain, Membership, Tenant
from tests.billing.conftest import ENTERPRISE_PRICE, event_at, signup_payload
from tests.conftest import host_client


def owner_session(world_or_paid, user=None):  # noqa: ANN001, ANN201
    tenant = world_or_paid.tenant
    client = host_client(f"{tenant.subdomain}.localhost")
    owner = user or Membership.objects.get(tenant=tenant, role=Membership.Role.OWNER).user
    with tenant_context(tenant):
        client.force_login(owner)
    return client


# --- plans offered --------------------------------------------------------------------------


def test_paid_plans_without_a_stripe_price_are_not_offered(stripe_fake, public_client):
    offered = [plan["slug"] for plan in public_client.get("/api/plans/").json()]
    assert offered == ["free"]
    home = public_client.get("/").content.decode()
    assert "Choose Pro" not in home and "¢" not in home

    response = public_client.post("/api/signup/", signup_payload("unpriced"), format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "plan_unavailable"
    assert "not available" in response.json()["error"]["fields"]["plan"][0]
    assert stripe_fake.requests == []


def test_priced_plans_are_offered_with_readable_prices(stripe_fake, paid_plans, public_client):
    assert [plan["slug"] for plan in public_client.get("/api/plans/").json()] == ["free", "pro", "enterprise"]
    home = public_client.get("/").content.decode()
    assert "$49" in home and "5,000,000 tokens a month" in home


def test_without_stripe_only_free_plans_are_offered(public_client, settings):
    settings.DEBUG = False
    assert [plan["slug"] for plan in public_client.get("/api/plans/").json()] == ["free"]


def test_the_operator_admin_warns_about_paid_plans_customers_cannot_buy(stripe_fake, admin_client):
    admin_client.defaults["HTTP_HOST"] = "localhost"
    for path in ("/admin/billing/plan/", "/admin/tenants/tenant/"):
        body = admin_client.get(path).content.decode()
        assert "The Pro plan costs 49.00 a month but has no Stripe price id" in body, path
        assert "The Enterprise plan" in body


# --- the billing page ---------------------------------------------------------------------------


def test_the_billing_page_shows_the_plan_and_usage_and_only_owners_get_buttons(acme):
    owner_page = owner_session(acme).get("/billing/").content.decode()
    assert 'id="current-plan">Free<' in owner_page and "tokens used this period" in owner_page
    assert 'name="plan" value="free"' not in owner_page  # the current plan is not a choice

    member_page = acme.session_client(acme.member).get("/billing/").content.decode()
    assert "Only the owners" in member_page and 'action="/billing/plan/"' not in member_page
    refused = acme.session_client(acme.member).post("/billing/plan/", {"plan": "free"})
    assert refused.status_code == 302 and refused["Location"] == "/billing/"


def test_a_free_tenant_upgrades_through_checkout_and_the_webhook_sets_the_plan(
    stripe_fake, paid_plans, acme, send_webhook
):
    response = owner_session(acme).post("/billing/plan/", {"plan": "pro"})

    assert response.status_code == 302 and response["Location"].startswith(f"{stripe_fake.base_url}/c/pay/")
    row = Subscription.objects.get(tenant=acme.tenant)
    session = stripe_fake.checkout_sessions[row.checkout_session_id]
    assert session["metadata"]["plan"] == "pro"
    assert session["success_url"] == f"{acme.tenant.url}billing/?checkout=success"
    assert row.plan.slug == "free"  # nothing changes before Stripe says it is paid

    _, event = stripe_fake.complete_checkout(row.checkout_session_id)
    assert "plan changed to pro" in send_webhook(event).json()["outcome"]
    row.refresh_from_db()
    assert (row.plan.slug, row.status) == ("pro", "active")


def test_a_paying_tenant_changes_or_cancels_its_plan_in_the_portal(stripe_fake, paid_tenant, send_webhook):
    client = owner_session(paid_tenant)

    upgrade = client.post("/billing/plan/", {"plan": "enterprise"})
    portal = next(iter(stripe_fake.portal_sessions.values()))
    assert upgrade["Location"] == portal["url"]
    assert portal["flow"]["type"] == "subscription_update"
    assert portal["flow"]["subscription_update"]["subscription"] == paid_tenant.subscription["id"]
    assert portal["flow"]["after_completion"]["redirect"]["return_url"] == f"{paid_tenant.tenant.url}billing/?changed=1"

    stripe_fake.portal_sessions.clear()
    client.post("/billing/plan/", {"plan": "free"})
    assert next(iter(stripe_fake.portal_sessions.values()))["flow"]["type"] == "subscription_cancel"

    updated = dict(paid_tenant.subscription)
    updated["items"] = {"data": [{"price": {"id": ENTERPRISE_PRICE}, "current_period_end": 2_000_000_000}]}
    send_webhook(event_at("customer.subscription.updated", updated))
    assert paid_tenant.row.plan.slug == "enterprise"


def test_a_cancelled_subscription_can_be_started_again(stripe_fake, paid_tenant, send_webhook):
    send_webhook(event_at("customer.subscription.deleted", {**paid_tenant.subscription, "status": "canceled"}))
    assert (paid_tenant.row.plan.slug, paid_tenant.row.status) == ("free", "canceled")

    response = owner_session(paid_tenant).post("/billing/plan/", {"plan": "pro"})
    assert response["Location"].startswith(f"{stripe_fake.base_url}/c/pay/")
    _, event = stripe_fake.complete_checkout(paid_tenant.row.checkout_session_id)
    send_webhook(event)

    assert (paid_tenant.row.plan.slug, paid_tenant.row.status) == ("pro", "active")


def test_without_stripe_a_plan_change_to_an_offered_plan_is_immediate(acme, settings):
    settings.DEBUG = True  # paid plans are offered without payment in a local demo

    response = owner_session(acme).post("/billing/plan/", {"plan": "pro"})

    assert response.status_code == 302
    assert Subscription.objects.get(tenant=acme.tenant).plan.slug == "pro"


# --- pending signups ---------------------------------------------------------------------------


def test_the_pending_page_offers_payment_to_the_owner_only(pending_tenant, stripe_fake):
    anonymous = pending_tenant.client().get("/")
    assert anonymous.status_code == 402 and 'id="login-to-pay"' in anonymous.content.decode()
    member = Membership.objects.get(tenant=pending_tenant.tenant, role=Membership.Role.MEMBER).user
    as_member = owner_session(pending_tenant, member).get("/").content.decode()
    assert "complete-payment" not in as_member and "The owner who signed it up" in as_member
    owner = owner_session(pending_tenant)
    assert 'id="complete-payment"' in owner.get("/").content.decode()

    paying = owner.post("/billing/pay/")

    assert paying.status_code == 302 and paying["Location"].startswith(f"{stripe_fake.base_url}/c/pay/")
    assert len(stripe_fake.checkout_sessions) == 2
    assert owner_session(pending_tenant, member).post("/billing/pay/")["Location"] == "/"


def test_signing_up_again_resumes_an_abandoned_signup(pending_tenant, stripe_fake, public_client):
    payload = signup_payload(pending_tenant.tenant.subdomain)

    wrong = public_client.post("/api/signup/", {**payload, "password": "not-the-password"}, format="json")
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "subdomain_taken"

    again = public_client.post("/api/signup/", payload, format="json")
    assert again.status_code == 201, again.content
    body = again.json()
    assert body["checkout_url"] != stripe_fake.checkout_sessions[pending_tenant.session_id]["url"]
    assert body["checkout_url"].startswith(f"{stripe_fake.base_url}/c/pay/")
    assert body["tenant"]["status"] == "pending_payment"
    assert Tenant.objects.filter(subdomain=pending_tenant.tenant.subdomain).count() == 1

    free = public_client.post("/api/signup/", {**payload, "plan": "free"}, format="json")
    assert free.json()["checkout_url"] is None
    assert pending_tenant.refresh().status == Tenant.Status.ACTIVE


def _age(tenant: Tenant, *, days: float, quiet_hours: float = 48) -> None:
    now = timezone.now()
    Tenant.objects.filter(pk=tenant.pk).update(created=now - dt.timedelta(days=days))
    Subscription.objects.filter(tenant=tenant).update(updated=now - dt.timedelta(hours=quiet_hours))


def test_unpaid_signups_are_released_after_seven_days(pending_tenant, public_client):
    tenant = pending_tenant.tenant
    _age(tenant, days=6.9)
    assert signups_unpaid_release() == []

    _age(tenant, days=7.1, quiet_hours=3)  # a Checkout opened three hours ago may still be paid
    assert signups_unpaid_release() == []

    _age(tenant, days=7.1)
    assert signups_unpaid_release() == [tenant.subdomain]

    assert not Tenant.objects.filter(pk=tenant.pk).exists()
    assert not Domain.objects.filter(tenant_id=tenant.pk).exists()
    assert not schema_exists(tenant.schema_name)
    again = public_client.post("/api/signup/", signup_payload(tenant.subdomain, plan="free"), format="json")
    assert again.status_code == 201, again.content  # the subdomain is free again


def test_active_tenants_are_never_released(acme):
    _age(acme.tenant, days=400)
    assert signups_unpaid_release() == []
    assert Tenant.objects.filter(pk=acme.tenant.pk).exists()


def test_the_release_runs_as_a_periodic_job():
    periodic = {task.task.name: task for task in app.periodic_registry.periodic_tasks.values()}
    assert pending_release.name in periodic
    assert periodic[pending_release.name].cron
