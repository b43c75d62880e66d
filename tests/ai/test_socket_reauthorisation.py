"""Open sockets lose their right to answers as soon as it is gone: every client frame re-checks the
tenant, the membership and the credential (4403), and a suspension closes them at once."""

import asyncio
import json

import httpx
import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.sessions.models import Session
from django_tenants.utils import get_public_schema_name, schema_context, tenant_context
from rest_framework.authtoken.models import Token

from tenants.models import Membership, Tenant
from tenants.services import tenant_reactivate, tenant_suspend
from tests.ai.chat_client import receive, ws_connect
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db]

CANCEL = json.dumps({"type": "cancel"})  # a frame that costs no model time, answered or not


async def db(fn, *args):
    def in_public():  # noqa: ANN202 - as a request starts: the sync thread may be in another test's schema
        with schema_context(get_public_schema_name()):
            return fn(*args)

    return await database_sync_to_async(in_public)()


@pytest.fixture
async def newcomer(live_worlds):
    """A member of globex with a login token, committed so the live server sees it."""
    globex = live_worlds["globex"]

    def make():
        user = UserFactory()
        Membership.objects.create(user=user, tenant=globex.tenant, role=Membership.Role.MEMBER)
        return user, Token.objects.create(user=user).key

    user, key = await db(make)
    yield globex, user, key
    # The user stays (deleting one cascades into every tenant schema); its access goes.
    await db(lambda: (Membership.objects.filter(user=user).delete(), Token.objects.filter(user=user).delete()))


async def assert_refused(ws):
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await receive(ws, timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_deactivated_members_token_opens_no_socket(asgi_server, newcomer):
    globex, user, key = newcomer
    async with await ws_connect(asgi_server, "globex", token=key):
        pass  # the token opens one while its person is active
    await db(lambda: type(user).objects.filter(pk=user.pk).update(is_active=False))

    with pytest.raises(websockets.InvalidStatus) as refused:
        await ws_connect(asgi_server, "globex", token=key)
    assert refused.value.response.status_code == 403


async def test_a_socket_whose_token_was_deleted_by_logout_is_closed_on_its_next_frame(asgi_server, newcomer):
    globex, _, key = newcomer
    async with await ws_connect(asgi_server, "globex", token=key) as ws:
        async with httpx.AsyncClient(base_url=asgi_server.url) as http:
            logout = await http.post(
                "/api/auth/logout/",
                headers={"Host": f"globex.localhost:{asgi_server.port}", "Authorization": f"Token {key}"},
            )
        assert logout.status_code == 200
        await ws.send(CANCEL)
        await assert_refused(ws)


async def test_a_socket_whose_session_was_flushed_is_closed_on_its_next_frame(asgi_server, newcomer):
    globex, user, _ = newcomer
    async with httpx.AsyncClient(
        base_url=asgi_server.url, headers={"Host": f"globex.localhost:{asgi_server.port}"}
    ) as http:
        login = await http.post("/api/auth/login/", json={"email": user.email, "password": PASSWORD})
    session_key = login.cookies["sessionid"]
    async with await ws_connect(asgi_server, "globex", cookie=session_key, origin=asgi_server.host_url("globex")) as ws:

        def flush():
            with tenant_context(globex.tenant):
                Session.objects.filter(session_key=session_key).delete()

        await db(flush)
        await ws.send(CANCEL)
        await assert_refused(ws)


async def test_a_socket_of_a_removed_member_is_closed_on_its_next_frame(asgi_server, newcomer):
    globex, user, key = newcomer
    async with await ws_connect(asgi_server, "globex", token=key) as ws:
        await db(lambda: Membership.objects.filter(user=user, tenant=globex.tenant).delete())
        await ws.send(CANCEL)
        await assert_refused(ws)


async def test_a_socket_of_a_tenant_no_longer_active_is_closed_on_its_next_frame(asgi_server, newcomer):
    globex, _, key = newcomer
    set_status = lambda status: Tenant.objects.filter(pk=globex.tenant.pk).update(status=status)  # noqa: E731
    async with await ws_connect(asgi_server, "globex", token=key) as ws:
        # A plain update, no service: only the per-frame check can notice.
        await db(set_status, Tenant.Status.PENDING_PAYMENT)
        try:
            await ws.send(CANCEL)
            await assert_refused(ws)
        finally:
            await db(set_status, Tenant.Status.ACTIVE)


async def test_suspending_a_tenant_closes_its_open_sockets_within_seconds_and_no_others(live_worlds, asgi_server):
    globex, acme = live_worlds["globex"], live_worlds["acme"]
    async with (
        await ws_connect(asgi_server, "globex", token=globex.member_token) as suspended,
        await ws_connect(asgi_server, "acme", token=acme.member_token) as other,
    ):
        started = asyncio.get_running_loop().time()
        # As an operator's admin action runs it: a sync view in the server's worker thread.
        await asgi_server.run_as_a_view(lambda: tenant_suspend(tenant=Tenant.objects.get(pk=globex.tenant.pk)))
        try:
            await assert_refused(suspended)  # without sending anything
            assert asyncio.get_running_loop().time() - started < 5
            # The other tenant's socket is still served: a frame sent after the suspension is answered.
            await other.send("not a frame")
            assert (await receive(other))["error"]["code"] == "bad_request"
            assert other.close_code is None
        finally:
            await db(lambda: tenant_reactivate(tenant=Tenant.objects.get(pk=globex.tenant.pk)))
