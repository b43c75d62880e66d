from billing.models import Subscription
from tenants.models import Membership, Tenant
from tenants.services.status import tenant_suspend
from tests.billing.conftest import PRO_PRICE, PRO_TOKENS_PRICE, add_member, signup_payload
from tests.conftest import host_client


def test_paid_signup_waits_for_payment_then_the_webhook_activates_it(
    stripe_fake, paid_plans, public_client, send_webhook, unique_subdomain
):
    response = public_client.post("/api/signup/", signup_payload(unique_subdomain), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tenant"]["status"] == "pending_payment"
    assert body["checkout_url"].startswith(f"{stripe_fake.base_url}/c/pay/cs_test_")
    tenant = Tenant.objects.get(subdomain=unique_subdomain)
    row = Subscription.objects.get(tenant=tenant)
    session = stripe_fake.checkout_sessions[row.checkout_session_id]
    assert session["url"] == body["checkout_url"]
    assert session["customer"] == row.stripe_customer_id
    assert stripe_fake.customers[row.stripe_customer_id]["email"] == f"boss@{unique_subdomain}.test"
    assert session["client_reference_id"] == unique_subdomain
    assert [item["price"]["id"] for item in stripe_fake._line_items[session["id"]]] == [PRO_PRICE, PRO_TOKENS_PRICE]

    client = host_client(f"{unique_subdomain}.localhost", body["token"])
    waiting = client.get("/api/documents/")
    assert waiting.status_code == 402
    assert waiting.json()["error"]["code"] == "payment_pending"

    subscription, event = stripe_fake.complete_checkout(row.checkout_session_id)
    delivered = send_webhook(event)

    assert delivered.status_code == 200, delivered.content
    assert delivered.json()["outcome"] == "subscription active; tenant activated"
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    row.refresh_from_db()
    assert (row.status, row.stripe_subscription_id) == ("active", subscription["id"])
    assert client.get("/api/documents/").status_code == 200


def test_free_plan_is_active_at_once_even_with_stripe_on(stripe_fake, public_client, unique_subdomain):
    response = public_client.post("/api/signup/", signup_payload(unique_subdomain, plan="free"), format="json")

    assert response.status_code == 201
    assert response.json()["checkout_url"] is None
    assert response.json()["tenant"]["status"] == "active"
    assert stripe_fake.requests == []


def test_without_stripe_paid_plans_are_refused_at_signup(public_client, unique_subdomain, settings):
    settings.DEBUG = False

    response = public_client.post("/api/signup/", signup_payload(unique_subdomain), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "billing_unavailable"
    assert "billing is not configured" in error["fields"]["plan"][0]
    assert not Tenant.objects.filter(subdomain=unique_subdomain).exists()


def test_without_stripe_in_debug_paid_plans_start_with_a_note(public_client, unique_subdomain, settings):
    settings.DEBUG = True

    response = public_client.post("/api/signup/", signup_payload(unique_subdomain), format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["tenant"]["status"] == "active"
    assert body["checkout_url"] is None
    assert "Stripe is not configured" in body["note"]


def test_a_stripe_outage_at_signup_stores_nothing(stripe_fake, paid_plans, public_client, unique_subdomain):
    stripe_fake.outage = True

    response = public_client.post("/api/signup/", signup_payload(unique_subdomain), format="json")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "billing_unavailable"
    assert not Tenant.objects.filter(subdomain=unique_subdomain).exists()


def test_the_owner_of_a_pending_tenant_gets_a_fresh_checkout(pending_tenant, stripe_fake):
    first_session = pending_tenant.session_id

    response = pending_tenant.client(pending_tenant.owner_token).post("/api/billing/checkout/")

    assert response.status_code == 200, response.content
    row = pending_tenant.row
    assert row.checkout_session_id != first_session
    assert response.json()["url"] == stripe_fake.checkout_sessions[row.checkout_session_id]["url"]
    # The existing customer is reused, not a second one created.
    assert row.stripe_customer_id == pending_tenant.customer_id
    assert len(stripe_fake.customers) == 1


def test_members_may_not_start_checkout_or_open_the_portal(pending_tenant):
    client = pending_tenant.client(pending_tenant.member_token)

    for path in ("/api/billing/checkout/", "/api/billing/portal/"):
        response = client.post(path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"


def test_an_active_tenant_is_sent_to_the_portal_not_checkout(paid_tenant):
    response = paid_tenant.client(paid_tenant.owner_token).post("/api/billing/checkout/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_paid"


def test_owners_get_a_billing_portal_url(paid_tenant, stripe_fake):
    response = paid_tenant.client(paid_tenant.owner_token).post("/api/billing/portal/")

    assert response.status_code == 200, response.content
    (portal,) = stripe_fake.portal_sessions.values()
    assert response.json() == {"url": portal["url"]}
    assert portal["customer"] == paid_tenant.customer_id
    assert portal["return_url"] == paid_tenant.tenant.url


def test_admins_are_not_owners_for_billing(paid_tenant):
    _, admin_token = add_member(paid_tenant.tenant, role=Membership.Role.ADMIN)

    assert paid_tenant.client(admin_token).post("/api/billing/portal/").status_code == 403


def test_a_tenant_without_a_stripe_customer_has_no_portal(acme, stripe_fake):
    response = acme.client(acme.owner_token).post("/api/billing/portal/")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_billing_account"


def test_a_portal_request_during_a_stripe_outage_is_a_clean_503(paid_tenant, stripe_fake):
    stripe_fake.outage = True

    response = paid_tenant.client(paid_tenant.owner_token).post("/api/billing/portal/")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "billing_unavailable"


def test_a_tenant_suspended_for_non_payment_can_still_reach_the_portal(paid_tenant):
    from billing.services.subscriptions import NONPAYMENT_REASON

    tenant_suspend(tenant=paid_tenant.tenant, reason=NONPAYMENT_REASON)
    client = paid_tenant.client(paid_tenant.owner_token)

    assert client.get("/api/documents/").status_code == 403
    assert client.post("/api/billing/portal/").status_code == 200
