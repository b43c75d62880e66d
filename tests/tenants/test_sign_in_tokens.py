"""The signed tokens behind the welcome link, the workspace hand-off and the second-factor step
(tenants.sign_in_tokens): bound to one workspace, voided by a new password, expiring, and a
one-time token spent by a sign-in."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from core.models import User
from tenants.sign_in_tokens import SignInTokens, TokenExpired, TokenInvalid

pytestmark = pytest.mark.django_db

ONE_TIME = SignInTokens(salt="tests.one-time", one_time=True)
STEP = SignInTokens(salt="tests.step", one_time=False)


def _fresh(user: User) -> User:
    # The worlds' user objects are shared by every test of the session: never change those, and
    # read the row as it is now (other tests signed this person in, moving last_login).
    return User.objects.get(pk=user.pk)


def test_a_token_names_its_person_and_carries_what_it_was_given(acme):
    token = ONE_TIME.issue(user=_fresh(acme.member), tenant_id=acme.tenant.pk, s=7)

    user, data = ONE_TIME.read(token=token, tenant_id=acme.tenant.pk, max_age=60)

    assert (user, data["s"]) == (acme.member, 7)


def test_a_token_is_refused_on_another_workspace_under_another_salt_and_when_altered(acme, globex):
    token = ONE_TIME.issue(user=_fresh(acme.member), tenant_id=acme.tenant.pk)

    for tenant_id, tokens, text in (
        (globex.tenant.pk, ONE_TIME, token),
        (acme.tenant.pk, STEP, token),
        (acme.tenant.pk, ONE_TIME, token[:-2] + ("AA" if not token.endswith("AA") else "BB")),
        (acme.tenant.pk, ONE_TIME, ""),
    ):
        with pytest.raises(TokenInvalid):
            tokens.read(token=text, tenant_id=tenant_id, max_age=60)


def test_a_token_past_its_age_is_expired_not_merely_invalid(acme):
    token = STEP.issue(user=_fresh(acme.member), tenant_id=acme.tenant.pk, at=timezone.now() - dt.timedelta(seconds=61))

    with pytest.raises(TokenExpired):
        STEP.read(token=token, tenant_id=acme.tenant.pk, max_age=60)


def test_a_sign_in_spends_one_time_tokens_and_leaves_step_tokens(acme):
    member = _fresh(acme.member)
    one_time = ONE_TIME.issue(user=member, tenant_id=acme.tenant.pk)
    step = STEP.issue(user=member, tenant_id=acme.tenant.pk)

    ONE_TIME.spend(member)

    with pytest.raises(TokenInvalid):
        ONE_TIME.read(token=one_time, tenant_id=acme.tenant.pk, max_age=60)
    assert STEP.read(token=step, tenant_id=acme.tenant.pk, max_age=60)[0] == acme.member


def test_a_new_password_or_a_deactivated_account_voids_every_token(acme):
    member = _fresh(acme.member)
    step = STEP.issue(user=member, tenant_id=acme.tenant.pk)
    member.set_password("another correct horse battery")
    member.save()
    with pytest.raises(TokenInvalid):
        STEP.read(token=step, tenant_id=acme.tenant.pk, max_age=60)

    step = STEP.issue(user=member, tenant_id=acme.tenant.pk)
    member.is_active = False
    member.save()
    with pytest.raises(TokenInvalid):
        STEP.read(token=step, tenant_id=acme.tenant.pk, max_age=60)
