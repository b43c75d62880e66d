"""The reads every request and socket starts with (tenants.credentials), each one schema-qualified
statement: what they find, what they refuse, and that what comes with them costs nothing later."""

from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from core.models import User
from tenants.credentials import host_and_token, tenant_by_host, token_holder
from tenants.mfa.models import MfaPolicy
from tenants.mfa.services import mfa_required_by
from tenants.selectors import api_key_id_of
from tenants.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db


def test_a_host_is_its_tenant_with_its_two_factor_policy_in_one_statement(acme, globex, django_assert_num_queries):
    MfaPolicy.objects.create(tenant=globex.tenant, required=True)
    connection.search_path_set_schemas = None  # a connection fresh from the pool: none is set for it

    with django_assert_num_queries(2):  # one each
        found, other = tenant_by_host(acme.host.split(":")[0]), tenant_by_host(globex.host.split(":")[0])
    assert found == acme.tenant and other == globex.tenant
    with django_assert_num_queries(0):
        assert not mfa_required_by(tenant=found) and mfa_required_by(tenant=other)
    assert tenant_by_host("nowhere.localhost") is None


def test_a_token_is_its_user_with_their_membership_of_the_tenant_asked_about(acme, globex, django_assert_num_queries):
    with django_assert_num_queries(1):
        holder = token_holder(key=acme.member_token, tenant=acme.tenant)
    assert holder is not None and holder.token.key == acme.member_token
    assert holder.user == acme.member and holder.membership.tenant == acme.tenant
    with django_assert_num_queries(0):
        assert holder.membership.user is holder.user and holder.token.user is holder.user
        assert api_key_id_of(user=holder.user) is None

    elsewhere = token_holder(key=acme.member_token, tenant=globex.tenant)  # a person, not a member there
    assert elsewhere is not None and elsewhere.user == acme.member and elsewhere.membership is None
    assert token_holder(key="0" * 40, tenant=acme.tenant) is None


def test_an_inactive_persons_token_is_found_and_refused_by_its_callers(acme):
    User.objects.filter(pk=acme.member.pk).update(is_active=False)

    holder = token_holder(key=acme.member_token, tenant=acme.tenant)
    assert holder is not None and not holder.user.is_active  # the caller says why it refuses
    response = acme.client(acme.member_token).get("/api/documents/")
    assert response.status_code == 401 and "inactive" in response.json()["error"]["message"]
    _, at_handshake = host_and_token(hostname=acme.host.split(":")[0], key=acme.member_token)
    assert at_handshake is not None and not at_handshake.user.is_active


def test_an_api_keys_own_user_comes_with_its_key(acme):
    key, _ = api_key_create(tenant=acme.tenant, created_by=acme.owner, name="bot", scope="read")
    token = Token.objects.create(user=key.user)  # not something Strata makes; the read must still be right

    holder = token_holder(key=token.key, tenant=acme.tenant)

    assert holder is not None and holder.membership is None and api_key_id_of(user=holder.user) == key.pk


def test_the_host_and_a_token_in_one_statement(acme, globex, django_assert_num_queries):
    host = acme.host.split(":")[0]
    with django_assert_num_queries(1):
        tenant, holder = host_and_token(hostname=host, key=acme.member_token)
    assert tenant == acme.tenant and holder.user == acme.member and holder.membership.tenant == acme.tenant

    tenant, holder = host_and_token(hostname=host, key=globex.member_token)
    assert tenant == acme.tenant and holder.user == globex.member and holder.membership is None
    assert host_and_token(hostname=host, key="") == (acme.tenant, None)
    assert host_and_token(hostname=host, key="0" * 40) == (acme.tenant, None)
    assert host_and_token(hostname="nowhere.localhost", key=acme.member_token) == (None, None)
