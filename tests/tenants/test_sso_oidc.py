"""OpenID Connect sign-in per tenant, against a real identity provider on loopback (tests/fakes/oidc_provider.py)."""

from __future__ import annotations

from django.db import connection

from tenants.sso.models import SsoConfig


def test_client_secret_is_stored_encrypted(acme) -> None:
    SsoConfig.objects.create(
        tenant=acme.tenant, protocol="oidc", issuer="http://127.0.0.1:1/", client_id="c", client_secret="s3cr3t-value"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM sso_ssoconfig WHERE tenant_id = %s", [acme.tenant.pk])
        (stored,) = cursor.fetchone()
    assert "s3cr3t-value" not in stored
    assert SsoConfig.objects.for_tenant(acme.tenant).get().client_secret == "s3cr3t-value"
