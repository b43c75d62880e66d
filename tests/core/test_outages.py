"""Outages answer 503 with Retry-After and heal without a restart: a real server process whose
PostgreSQL (behind a TCP proxy the test cuts) or Redis (a real redis-server the test stops) goes
away for a while, then comes back."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from django.db import connection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.ai.factories import world_create
from tests.outage_proxy import TcpProxy
from tests.processes import (
    SPAWNED_APPLICATION_NAME,
    ServedProcess,
    committed,
    database_backends_end,
    wait_until,
)
from tests.redis_server import RedisServer

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(scope="module")
def quiet(django_db_setup, django_db_blocker):  # noqa: ANN001
    with django_db_blocker.unblock():
        return committed(world_create, "Outage")


def _database_behind(proxy_port: int) -> str:
    params = connection.get_connection_params()
    return f"postgres://{params['user']}@127.0.0.1:{proxy_port}/{params['dbname']}"


def _documents(url: str, world) -> httpx.Response:  # noqa: ANN001
    headers = {"Host": f"{world.tenant.subdomain}.localhost", "Authorization": f"Token {world.member_token}"}
    return httpx.get(f"{url}/api/documents/", headers=headers, timeout=30)


def _login_page(url: str, world) -> httpx.Response:  # noqa: ANN001
    return httpx.get(f"{url}/login/", headers={"Host": f"{world.tenant.subdomain}.localhost"}, timeout=30)


def _websocket_handshake(port: int, world) -> object:  # noqa: ANN001
    """``"accepted"`` (the socket answers a frame), the close code of a refused socket, or the HTTP
    status and Retry-After of a rejected handshake."""
    try:
        with connect(
            f"ws://{world.tenant.subdomain}.localhost:{port}/ws/chat/",
            additional_headers={"Authorization": f"Token {world.member_token}"},
            sock=socket.create_connection(("127.0.0.1", port)),
            open_timeout=10,
        ) as ws:
            ws.send(json.dumps({"type": "ping"}))
            ws.recv(timeout=10)
            return "accepted"
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else "closed without a frame"
    except InvalidStatus as refused:
        return refused.response.status_code, refused.response.headers.get("Retry-After")


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert int(response.headers["Retry-After"]) > 0


def test_a_database_outage_is_a_503_with_retry_after_and_heals_without_a_restart(
    quiet, django_db_blocker, tmp_path: Path
):
    with django_db_blocker.unblock():
        params = connection.get_connection_params()
        proxy = TcpProxy(f"{params['host']}/.s.PGSQL.{params.get('port') or 5432}").start()
        env = {
            "DATABASE_URL": _database_behind(proxy.port),
            "DB_POOL_TIMEOUT": "2",
            "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
        }
        server = ServedProcess(env=env, log=tmp_path / "web.log")
        server.process.args  # noqa: B018 - started
        try:
            server.wait_ready()
            assert _documents(server.url, quiet).status_code == 200

            proxy.cut()
            _assert_unavailable(_documents(server.url, quiet))
            _assert_unavailable(_login_page(server.url, quiet))
            assert _documents(server.url, quiet).json()["error"]["code"] == "service_unavailable"

            proxy.restore()
            wait_until(lambda: _documents(server.url, quiet).status_code == 200, timeout=30, what="recovery")
            assert server.process.poll() is None  # the same process, never restarted
        finally:
            server.stop()
            proxy.stop()
            database_backends_end(spawned_only=True)


def test_a_redis_outage_degrades_limits_to_the_process_and_heals_without_a_restart(
    quiet, django_db_blocker, anthropic_server, tmp_path: Path
):
    redis = RedisServer().start()
    env = {
        "REDIS_URL": redis.url,
        "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
        "ANTHROPIC_API_KEY": "sk-ant-test-key",
        "ANTHROPIC_BASE_URL": anthropic_server.base_url,
    }
    host = {"Host": f"{quiet.tenant.subdomain}.localhost"}
    login = {"email": quiet.member.email, "password": "wrong password"}
    with django_db_blocker.unblock():
        server = ServedProcess(env=env, log=tmp_path / "web.log")
        try:
            server.wait_ready()
            redis.stop()

            # Throttles, lockouts and slots live in Redis: without it they hold per process.
            assert _documents(server.url, quiet).status_code == 200
            response = httpx.post(f"{server.url}/api/auth/login/", json=login, headers=host, timeout=30)
            assert response.status_code == 400, response.text[:300]
            # An answer's frames go through the shared stream log: refused, saying when to retry.
            chat = httpx.post(
                f"{server.url}/api/chat/",
                json={"message": "Hello?"},
                headers={**host, "Authorization": f"Token {quiet.member_token}"},
                timeout=30,
            )
            assert chat.status_code in (200, 503), chat.text[:300]
            if chat.status_code == 503:
                _assert_unavailable(chat)

            # A socket needs the channel layer: its handshake is refused as HTTP is, 503 + Retry-After.
            assert _websocket_handshake(server.port, quiet) == (503, "5")

            redis.start()
            response = httpx.post(
                f"{server.url}/api/chat/",
                json={"message": "Hello again?"},
                headers={**host, "Authorization": f"Token {quiet.member_token}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text[:300]
            assert server.process.poll() is None
        finally:
            server.stop()
            redis.stop()
            database_backends_end(spawned_only=True)


def test_a_web_process_whose_embedding_model_cannot_load_at_first_becomes_ready_once_it_can(
    django_db_blocker, tmp_path: Path
):
    """Its warm-up fails (here the model folder's path is taken by a file, as a full or read-only
    disk would fail it), is logged at once, and is tried again: the process reports not ready, then
    ready once the model loads, without a restart."""
    models = tmp_path / "models"
    models.write_text("a file where the model folder should be")
    log = tmp_path / "web.log"
    with django_db_blocker.unblock():
        server = ServedProcess(
            env={"EMBEDDING_CACHE_DIR": str(models), "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME}, log=log
        )
        try:
            wait_until(lambda: "could not be loaded" in log.read_text(), timeout=90, what="the failed load logged")
            readiness = httpx.get(f"{server.url}/readyz", headers={"Host": "localhost"}, timeout=10)
            assert readiness.status_code == 503
            assert readiness.json()["embeddings"]["ready"] is False

            models.unlink()
            server.wait_ready(timeout=120)
            assert server.process.poll() is None  # the same process, never restarted
        finally:
            server.stop()
