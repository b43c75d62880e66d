"""Invitations: invite by e-mail, accept once, within 7 days, revocable; nothing tells the inviter
whether the address has an account; per-tenant rate limit."""

import datetime as dt
import hashlib

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from core.models import User
from tenants.models import Invitation, Membership
from tests.conftest import host_client
from tests.factories import PASSWORD
from tests.tenants.conftest import link_in, sent_to

NEW_PASSWORD = "An0ther-Passphrase!"


def invite(world, token, email, role="member", jobs=None):
    client = world.client(token)
    if jobs is None:
        return client.post("/api/invitations/", {"email": email, "role": role}, format="json")
    with jobs():
        return client.post("/api/invitations/", {"email": email, "role": role}, format="json")


def invitation_token(world, email):
    message = sent_to(email)[-1]
    link = link_in(message, rf"http://{world.tenant.subdomain}\.localhost:8000/invite/[\w-]+/")
    return link.rstrip("/").rsplit("/", 1)[1]


def accept(world, body, token=None):
    return world.client(token).post("/api/invitations/accept/", body, format="json")


def test_an_owner_invites_and_the_newcomer_joins_with_name_and_password(acme, jobs):
    response = invite(acme, acme.owner_token, "Newcomer@Example.com", jobs=jobs)

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "newcomer@example.com"
    assert body["role"] == "member"
    assert body["invited_by"] == acme.owner.email
    assert set(body) >= {"id", "email", "role", "expires", "invited_by"}
    message = sent_to("newcomer@example.com")[0]
    assert "Acme" in message.subject
    assert "Acme" in message.body and "Acme" in message.alternatives[0][0]
    assert message.alternatives[0][1] == "text/html"

    token = invitation_token(acme, "newcomer@example.com")
    joined = accept(acme, {"token": token, "name": "Nia Newcomer", "password": NEW_PASSWORD})

    assert joined.status_code == 200
    user = User.objects.get(email="newcomer@example.com")
    assert user.full_name == "Nia Newcomer"
    assert user.check_password(NEW_PASSWORD)
    assert joined.json()["key"] == Token.objects.get(user=user).key
    assert joined.json()["user"]["role"] == "member"
    assert Membership.objects.get(user=user, tenant=acme.tenant).role == "member"
    assert acme.client(joined.json()["key"]).get("/api/documents/").status_code == 200


def test_the_token_is_stored_only_as_its_hash(acme, jobs):
    invite(acme, acme.owner_token, "hashed@example.com", jobs=jobs)
    token = invitation_token(acme, "hashed@example.com")

    invitation = Invitation.objects.get(email="hashed@example.com")
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert not any(
        token in str(value) for value in Invitation.objects.filter(pk=invitation.pk).values().first().values()
    )


def test_a_link_works_once(acme, jobs):
    invite(acme, acme.owner_token, "once@example.com", jobs=jobs)
    token = invitation_token(acme, "once@example.com")
    assert accept(acme, {"token": token, "name": "Once", "password": NEW_PASSWORD}).status_code == 200

    again = accept(acme, {"token": token, "name": "Twice", "password": NEW_PASSWORD})

    assert again.status_code == 410
    assert again.json()["error"]["code"] == "invitation_used"


def test_a_link_expires_after_seven_days(acme, jobs):
    response = invite(acme, acme.owner_token, "late@example.com", jobs=jobs)
    expires = dt.datetime.fromisoformat(response.json()["expires"])
    assert dt.timedelta(days=6, hours=23) < expires - timezone.now() <= dt.timedelta(days=7)
    token = invitation_token(acme, "late@example.com")
    Invitation.objects.filter(email="late@example.com").update(expires=timezone.now() - dt.timedelta(seconds=1))

    response = accept(acme, {"token": token, "name": "Late", "password": NEW_PASSWORD})

    assert response.status_code == 410
    assert response.json()["error"]["code"] == "invitation_expired"
    assert not User.objects.filter(email="late@example.com").exists()


def test_a_revoked_invitation_cannot_be_accepted(acme, jobs):
    created = invite(acme, acme.owner_token, "revoked@example.com", jobs=jobs).json()
    token = invitation_token(acme, "revoked@example.com")

    assert acme.client(acme.owner_token).delete(f"/api/invitations/{created['id']}/").status_code == 204
    response = accept(acme, {"token": token, "name": "Rev", "password": NEW_PASSWORD})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "invitation_invalid"
    assert acme.client(acme.owner_token).get("/api/invitations/").json()["count"] == 0


def test_resending_sends_a_new_link_and_the_old_one_stops_working(acme, jobs):
    created = invite(acme, acme.owner_token, "resend@example.com", jobs=jobs).json()
    old_token = invitation_token(acme, "resend@example.com")
    with jobs():
        resent = acme.client(acme.owner_token).post(f"/api/invitations/{created['id']}/resend/")
    new_token = invitation_token(acme, "resend@example.com")

    assert resent.status_code == 200
    assert len(sent_to("resend@example.com")) == 2
    assert new_token != old_token
    assert accept(acme, {"token": old_token, "name": "R", "password": NEW_PASSWORD}).status_code == 404
    assert accept(acme, {"token": new_token, "name": "R", "password": NEW_PASSWORD}).status_code == 200


def test_a_link_only_works_on_its_own_tenants_host(acme, globex, jobs):
    invite(acme, acme.owner_token, "hosted@example.com", jobs=jobs)
    token = invitation_token(acme, "hosted@example.com")

    elsewhere = accept(globex, {"token": token, "name": "H", "password": NEW_PASSWORD})
    public = host_client("localhost").post(
        "/api/invitations/accept/", {"token": token, "name": "H", "password": NEW_PASSWORD}, format="json"
    )

    assert elsewhere.status_code == 404
    assert public.status_code == 404
    assert not Membership.objects.filter(user__email="hosted@example.com").exists()


def test_an_existing_account_logs_in_to_accept(acme, globex, jobs):
    # globex's member is invited to acme: the link holder is told to log in, nobody else is.
    email = globex.member.email
    invite(acme, acme.owner_token, email, role="admin", jobs=jobs)
    token = invitation_token(acme, email)
    assert "log in" in sent_to(email)[0].body

    anonymous = accept(acme, {"token": token})
    wrong = accept(acme, {"token": token, "password": "not-the-password"})
    joined = accept(acme, {"token": token, "password": PASSWORD})

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "login_required"
    assert wrong.status_code == 400
    assert joined.status_code == 200
    assert Membership.objects.get(user=globex.member, tenant=acme.tenant).role == "admin"
    assert globex.member.check_password(PASSWORD)  # the account is unchanged


def test_a_logged_in_account_accepts_with_its_token(acme, globex, jobs):
    invite(acme, acme.owner_token, globex.owner.email, jobs=jobs)
    token = invitation_token(acme, globex.owner.email)

    response = accept(acme, {"token": token}, token=globex.owner_token)

    assert response.status_code == 200
    assert Membership.objects.filter(user=globex.owner, tenant=acme.tenant).exists()


def test_another_logged_in_account_cannot_take_the_invitation(acme, globex, jobs):
    invite(acme, acme.owner_token, "someone@example.com", jobs=jobs)
    token = invitation_token(acme, "someone@example.com")

    response = accept(acme, {"token": token}, token=globex.member_token)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invitation_other_account"
    assert not Membership.objects.filter(user=globex.member, tenant=acme.tenant).exists()


def test_a_new_account_needs_a_name_and_a_good_password(acme, jobs):
    invite(acme, acme.owner_token, "weak@example.com", jobs=jobs)
    token = invitation_token(acme, "weak@example.com")

    missing = accept(acme, {"token": token})
    weak = accept(acme, {"token": token, "name": "Weak", "password": "123"})

    assert missing.status_code == 400
    assert set(missing.json()["error"]["fields"]) == {"name", "password"}
    assert weak.status_code == 400
    assert "password" in weak.json()["error"]["fields"]
    assert not User.objects.filter(email="weak@example.com").exists()


def test_the_inviter_cannot_tell_whether_an_address_has_an_account(acme, globex, jobs):
    existing = invite(acme, acme.owner_token, globex.member.email, jobs=jobs)
    unknown = invite(acme, acme.owner_token, "nobody-yet@example.com", jobs=jobs)

    def shape(body):
        return {
            key: value for key, value in body.items() if key not in ("id", "email", "expires", "created", "sent_at")
        }

    assert existing.status_code == unknown.status_code == 201
    assert shape(existing.json()) == shape(unknown.json())
    listed = {row["email"]: row for row in acme.client(acme.owner_token).get("/api/invitations/").json()["results"]}
    assert shape(listed[globex.member.email]) == shape(listed["nobody-yet@example.com"])


@pytest.mark.parametrize("role", ["owner"])
def test_an_admin_cannot_invite_an_owner(acme, new_member, role):
    _, admin_token = new_member(acme, role="admin")

    response = invite(acme, admin_token, "boss@example.com", role=role)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "owner_required"
    assert invite(acme, admin_token, "helper@example.com", role="admin").status_code == 201


def test_members_cannot_invite_or_see_invitations(acme):
    assert invite(acme, acme.member_token, "friend@example.com").status_code == 403
    assert acme.client(acme.member_token).get("/api/invitations/").status_code == 403


def test_inviting_a_member_or_an_open_invitation_again_is_refused(acme):
    member = invite(acme, acme.owner_token, acme.member.email)
    assert invite(acme, acme.owner_token, "twice@example.com").status_code == 201
    twice = invite(acme, acme.owner_token, "twice@example.com")

    assert member.status_code == 400
    assert member.json()["error"]["code"] == "already_member"
    assert twice.status_code == 400
    assert twice.json()["error"]["code"] == "already_invited"


def test_an_expired_invitation_can_be_replaced_by_a_new_one(acme):
    invite(acme, acme.owner_token, "again@example.com")
    Invitation.objects.filter(email="again@example.com").update(expires=timezone.now() - dt.timedelta(days=1))

    assert invite(acme, acme.owner_token, "again@example.com").status_code == 201
    assert Invitation.objects.filter(email="again@example.com", revoked_at__isnull=True).count() == 1


def test_invitations_are_rate_limited_per_tenant(acme, globex, new_member, settings):
    settings.INVITATIONS_PER_TENANT_PER_HOUR = 3
    _, admin_token = new_member(acme, role="admin")
    statuses = [invite(acme, acme.owner_token, f"r{i}@example.com").status_code for i in range(2)]
    statuses.append(invite(acme, admin_token, "r2@example.com").status_code)  # the same tenant's budget

    refused = invite(acme, admin_token, "r3@example.com")

    assert statuses == [201, 201, 201]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert invite(globex, globex.owner_token, "r3@example.com").status_code == 201  # another tenant's is its own


def test_invitations_of_another_tenant_cannot_be_touched(acme, globex):
    created = invite(acme, acme.owner_token, "mine@example.com").json()
    client = globex.client(globex.owner_token)

    assert client.post(f"/api/invitations/{created['id']}/resend/").status_code == 404
    assert client.delete(f"/api/invitations/{created['id']}/").status_code == 404
    assert client.get("/api/invitations/").json()["count"] == 0


def test_a_bad_token_is_invalid(acme):
    response = accept(acme, {"token": "not-a-token", "name": "X", "password": NEW_PASSWORD})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "invitation_invalid"


def test_accepting_is_throttled_per_address(acme):
    statuses = [accept(acme, {"token": f"guess-{i}"}).status_code for i in range(31)]

    assert set(statuses[:30]) == {404}
    assert statuses[30] == 429
