import pytest

from billing.models import Plan, Subscription, UsageEvent, WebhookEvent
from tests.billing.conftest import bare_tenant, record_usage
from tests.conftest import host_client
from tests.fakes.stripe import make_event

# domain, session, user, plans filter, 2 counts, the page, status filter: each after its SET search_path
CHANGELIST_QUERIES = 16


@pytest.fixture
def operator_client(django_user_model, db):
    operator = django_user_model.objects.create_superuser("ops@example.com", "ops-Passw0rd!")
    client = host_client("localhost")
    client.force_login(operator)
    return client


def test_tenant_list_shows_usage_this_period_and_subscription_in_fixed_queries(
    operator_client, acme, globex, django_assert_max_num_queries
):
    record_usage(acme.tenant, tokens=1200)
    record_usage(acme.tenant, tokens=34)
    Subscription.objects.filter(tenant=acme.tenant).update(status="past_due", stripe_customer_id="cus_acme")
    pro = Plan.objects.get(slug="pro")
    for n in range(5):  # more tenants must not mean more queries
        bare_tenant(f"extra{n}", pro.slug)

    with django_assert_max_num_queries(CHANGELIST_QUERIES):
        response = operator_client.get("/admin/tenants/tenant/")

    assert response.status_code == 200
    rows = {tenant.subdomain: tenant for tenant in response.context["cl"].result_list}
    # Other tests of this worker may have committed tenants of their own (signup races).
    assert {"acme", "globex", *(f"extra{n}" for n in range(5))} <= rows.keys()
    assert (rows["acme"].tokens_this_period, rows["globex"].tokens_this_period) == (1234, 0)
    page = response.content.decode()
    assert "1,234" in page and "200,000" in page and "past_due" in page


def test_operators_change_a_tenants_plan_in_the_admin(operator_client, acme):
    enterprise = Plan.objects.get(slug="enterprise")
    page = operator_client.get(f"/admin/tenants/tenant/{acme.tenant.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = dict(form.initial)
    data = {key: value for key, value in data.items() if value is not None}
    for prefix, formset in ((f.formset.prefix, f.formset) for f in page.context["inline_admin_formsets"]):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": formset.total_form_count(),
                f"{prefix}-INITIAL_FORMS": formset.initial_form_count(),
            }
        )
        for index, inline_form in enumerate(formset.forms):
            data.update(
                {f"{prefix}-{index}-{name}": value for name, value in inline_form.initial.items() if value is not None}
            )
            data[f"{prefix}-{index}-id"] = inline_form.instance.pk

    data["subscription-0-plan"] = enterprise.pk  # the plan is edited on the tenant's subscription

    response = operator_client.post(f"/admin/tenants/tenant/{acme.tenant.pk}/change/", data)

    assert response.status_code == 302, [f.formset.errors for f in response.context["inline_admin_formsets"]]
    assert Subscription.objects.get(tenant=acme.tenant).plan == enterprise


@pytest.mark.parametrize("model", ["usageevent", "subscription", "webhookevent", "tenantusageperiod"])
def test_ledger_subscriptions_and_webhook_events_are_read_only(operator_client, acme, model):
    record_usage(acme.tenant)
    Subscription.objects.filter(tenant=acme.tenant).update(status="active")
    event = make_event("invoice.paid", {"id": "in_1"})
    WebhookEvent.objects.create(event_id=event["id"], type=event["type"], created="2026-01-01T00:00:00Z", payload=event)

    listing = operator_client.get(f"/admin/billing/{model}/")

    assert listing.status_code == 200
    assert listing.context["cl"].result_list  # every tenant has a subscription; the others one row each
    assert operator_client.get(f"/admin/billing/{model}/add/").status_code == 403
    obj = listing.context["cl"].result_list[0]
    detail = operator_client.get(f"/admin/billing/{model}/{obj.pk}/change/")
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert operator_client.post(f"/admin/billing/{model}/{obj.pk}/delete/").status_code == 403


def test_failed_meter_events_can_be_queued_again(operator_client, acme):
    failed = record_usage(acme.tenant)
    sent = record_usage(acme.tenant)
    UsageEvent.objects.filter(pk=failed.pk).update(meter_status="failed", meter_error="timestamp too old")
    UsageEvent.objects.filter(pk=sent.pk).update(meter_status="sent")

    response = operator_client.post(
        "/admin/billing/usageevent/", {"action": "meter_retry", "_selected_action": [failed.pk, sent.pk]}, follow=True
    )

    assert response.status_code == 200
    assert dict(UsageEvent.objects.values_list("pk", "meter_status")) == {failed.pk: "pending", sent.pk: "sent"}
