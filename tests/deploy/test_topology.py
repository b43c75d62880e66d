"""The production shape on loopback: nginx with wildcard subdomains in front of two uvicorn
processes sharing Redis (channel layer, cache) and PostgreSQL, all as real processes."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from tests.ai.chat_client import ask, receive
from tests.factories import PASSWORD
from tests.live_server import free_port, live_database_url

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not (Path(NGINX).exists() and Path(REDIS).exists()),
        reason="nginx and redis-server are installed by tests/run.sh",
    ),
]

NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  upstream strata {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}
  server {{
    listen 127.0.0.1:{port};
    server_name localhost *.localhost;
    location / {{
      proxy_pass http://strata;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
  }}
}}
"""


def wait_for(url: str, headers: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became healthy")


@pytest.fixture(scope="module")
def topology(django_db_setup, django_db_blocker, anthropic_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("topology")
    database_url = live_database_url()
    redis_port, nginx_port, port_a, port_b = free_port(), free_port(), free_port(), free_port()
    processes = [
        subprocess.Popen(
            [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
    ]
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "ANTHROPIC_API_KEY": "sk-ant-topology",
        "ANTHROPIC_BASE_URL": anthropic_server.base_url,
        "CHAT_MAX_STREAMS_PER_USER": "1",
        "TASK_MODE": "eager",
        "DEBUG": "false",
        "LOG_LEVEL": "ERROR",
    }
    for port in (port_a, port_b):
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "core.project.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--ws",
                    "websockets-sansio",
                    "--lifespan",
                    "off",
                    "--log-level",
                    "warning",
                ],
                cwd=ROOT,
                env=env,
            )
        )
    for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, a=port_a, b=port_b, port=nginx_port))
    processes.append(subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"]))
    try:
        with django_db_blocker.unblock():
            for port in (port_a, port_b):
                wait_for(f"http://127.0.0.1:{port}/healthz", {"Host": "localhost"})
            wait_for(f"http://127.0.0.1:{nginx_port}/healthz", {"Host": "localhost"})
            yield {"port": nginx_port, "backends": (port_a, port_b)}
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        with django_db_blocker.unblock():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            # Idle connections of this process's pool were among those ended: start a fresh pool,
            # or the next test module of this worker borrows a dead one.
            connection.close()
            connection.close_pool()


def via_nginx(topology, subdomain: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{topology['port']}",
        headers={"Host": f"{subdomain}.localhost:{topology['port']}"},
        timeout=20,
    )


def test_wildcard_subdomains_reach_their_tenant_through_nginx(topology, live_worlds):
    acme = live_worlds["acme"]
    with via_nginx(topology, "acme") as http:
        key = http.post("/api/auth/login/", json={"email": acme.member.email, "password": PASSWORD}).json()["key"]
        statuses = {
            http.get("/api/documents/", headers={"Authorization": f"Token {key}"}).status_code for _ in range(6)
        }
    with via_nginx(topology, "globex") as http:
        other = http.get("/api/documents/", headers={"Authorization": f"Token {key}"}).status_code
    with via_nginx(topology, "nowhere") as http:
        unknown = http.get("/api/documents/").status_code
    assert statuses == {200}  # round robin over both processes
    assert other == 403
    assert unknown == 404


def test_sse_streams_through_nginx_unbuffered(topology, live_worlds, anthropic_server):
    anthropic_server.reset()
    anthropic_server.reply = "a b c d e f"
    anthropic_server.token_delay = 0.1
    acme = live_worlds["acme"]
    arrivals = []
    with (
        via_nginx(topology, "acme") as http,
        http.stream(
            "POST", "/api/chat/", json={"message": "stream me"}, headers={"Authorization": f"Token {acme.member_token}"}
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] == "token":
                arrivals.append(time.monotonic())
    anthropic_server.reset()
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] > 0.35


def test_websocket_chat_through_nginx_and_limits_shared_by_both_processes(topology, live_worlds, anthropic_server):
    import websockets

    anthropic_server.reset()
    anthropic_server.reply = " ".join(f"w{i}" for i in range(60))
    anthropic_server.token_delay = 0.03
    acme = live_worlds["acme"]

    async def scenario():
        def connect():
            return websockets.connect(
                f"ws://acme.localhost:{topology['port']}/ws/chat/",
                additional_headers={"Authorization": f"Token {acme.owner_token}"},
                host="127.0.0.1",
                port=topology["port"],
                proxy=None,
                max_queue=None,
            )

        # nginx sends the two sockets to different processes (round robin); the per-user stream
        # limit of 1 still holds because the counter lives in Redis.
        async with connect() as first, connect() as second:
            await first.send(json.dumps({"message": "long answer"}))
            assert (await receive(first))["type"] == "start"
            refused = await ask(second, "me too")
            frames = []
            while not frames or frames[-1]["type"] not in ("done", "error"):
                frames.append(await receive(first))
            return refused, frames

    refused, frames = asyncio.run(scenario())
    anthropic_server.reset()
    assert refused[-1]["error"]["code"] == "too_many_streams"
    assert frames[-1]["type"] == "done"
    assert "".join(f["token"] for f in frames if f["type"] == "token") == " ".join(f"w{i}" for i in range(60))
