import pytest

from tenants.models import Tenant
from tenants.services import tenant_reactivate, tenant_suspend
from tests.conftest import host_client


def test_a_suspended_tenant_answers_api_calls_with_403(acme):
    tenant_suspend(tenant=acme.tenant, reason="Unpaid invoices")

    response = acme.client(acme.owner_token).get("/api/documents/")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_suspended"


def test_a_suspended_tenant_shows_browsers_a_readable_page(acme):
    tenant_suspend(tenant=acme.tenant)

    response = host_client(acme.host).get("/", HTTP_ACCEPT="text/html")

    assert response.status_code == 403
    assert "text/html" in response["Content-Type"]
    assert b"suspended" in response.content
    assert acme.tenant.name.encode() in response.content


def test_reactivation_restores_access(acme):
    tenant_suspend(tenant=acme.tenant)
    tenant_reactivate(tenant=acme.tenant)

    assert acme.client(acme.owner_token).get("/api/documents/").status_code == 200


def test_a_tenant_waiting_for_payment_says_so(acme):
    Tenant.objects.filter(pk=acme.tenant.pk).update(status=Tenant.Status.PENDING_PAYMENT)

    response = acme.client(acme.owner_token).get("/api/documents/")

    assert response.status_code == 402
    assert response.json()["error"]["code"] == "payment_pending"


def test_health_stays_reachable_on_a_suspended_tenant(acme):
    tenant_suspend(tenant=acme.tenant)

    assert host_client(acme.host).get("/healthz").status_code == 200


@pytest.mark.parametrize(("action", "expected"), [("suspend", "suspended"), ("reactivate", "active")])
def test_operators_suspend_and_reactivate_from_the_admin(acme, django_user_model, action, expected):
    operator = django_user_model.objects.create_superuser("ops@example.com", "ops-Passw0rd!")
    if action == "reactivate":
        tenant_suspend(tenant=acme.tenant)
    client = host_client("localhost")
    client.force_login(operator)

    response = client.post(
        "/admin/tenants/tenant/", {"action": action, "_selected_action": [acme.tenant.pk]}, follow=True
    )

    assert response.status_code == 200
    acme.tenant.refresh_from_db()
    assert acme.tenant.status == expected
