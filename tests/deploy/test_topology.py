"""The production topology on loopback, as shipped: deploy/nginx.conf rendered with loopback upstreams and
a certificate made here, in front of two web processes, a job worker and redis-server, all started from
deploy/Procfile in production mode against PostgreSQL. Everything goes through nginx over HTTPS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.ai.chat_client import ask, frames_until_end, receive
from tests.browser.conftest import CHROMIUM
from tests.factories import PASSWORD
from tests.processes import (
    ROOT,
    SPAWNED_APPLICATION_NAME,
    database_backends_end,
    free_port,
    process_stop,
    procfile_argv,
    ready_or_restarted,
    running,
    wait_for,
)
from tests.processes import live_database_url as database_url

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
LOGIN_RATE = 5  # per minute and client address, for the throttle check
pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(
        not (Path(NGINX).exists() and Path(REDIS).exists()),
        reason="nginx and redis-server are installed by tests/run.sh",
    ),
]


def self_signed_certificate(directory: Path, *names: str) -> tuple[Path, Path]:
    """A certificate for ``names`` (and 127.0.0.1), signed by its own key: the test's own CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def nginx_configuration(
    directory: Path, *, upstreams: list[int], http_port: int, https_port: int, cert: Path, key: Path
) -> Path:
    """deploy/nginx.conf rendered as the nginx image's envsubst step does (only these variables), and the
    main configuration that includes it, as the image's own nginx.conf includes conf.d."""
    values = {
        "BASE_DOMAIN": "localhost",
        "STRATA_UPSTREAM_SERVERS": " ".join(f"server 127.0.0.1:{port};" for port in upstreams),
        "NGINX_HTTP_LISTEN": f"127.0.0.1:{http_port}",
        "NGINX_HTTPS_LISTEN": f"127.0.0.1:{https_port}",
        "TLS_CERTIFICATE": str(cert),
        "TLS_CERTIFICATE_KEY": str(key),
    }
    rendered = (ROOT / "deploy" / "nginx.conf").read_text()
    for name, value in values.items():
        rendered = rendered.replace("${" + name + "}", value)
    assert "${" not in rendered, "deploy/nginx.conf uses a variable the test does not know"
    (directory / "strata.conf").write_text(rendered)
    for sub in ("body", "proxy", "fcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(exist_ok=True)
    main = directory / "nginx.conf"
    main.write_text(
        f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fcgi; uwsgi_temp_path {directory}/uwsgi; scgi_temp_path {directory}/scgi;
  include {directory}/strata.conf;
}}
"""
    )
    return main


@pytest.fixture(scope="module")
def topology(django_db_setup, django_db_blocker, anthropic_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("topology")
    signup_subdomain = f"topo{uuid.uuid4().hex[:8]}"
    hosts = ["localhost", "acme.localhost", "globex.localhost", "nowhere.localhost", f"{signup_subdomain}.localhost"]
    cert, key = self_signed_certificate(tmp, *hosts)
    redis_port, http_port, https_port = (free_port() for _ in range(3))
    env = {
        "STRATA_PRODUCTION": "true",
        "SECRET_KEY": "topology-" + uuid.uuid4().hex,
        "DATABASE_URL": database_url(),
        "DB_APPLICATION_NAME": SPAWNED_APPLICATION_NAME,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "BASE_DOMAIN": "localhost",
        "STRATA_DATA_DIR": str(tmp / "data"),
        "STATIC_ROOT": str(tmp / "static"),
        "ANTHROPIC_API_KEY": "sk-ant-topology",
        "ANTHROPIC_BASE_URL": anthropic_server.base_url,
        "CHAT_MAX_STREAMS_PER_USER": "1",
        "LOGIN_THROTTLE_RATE": f"{LOGIN_RATE}/min",
        "TENANT_SPARE_SCHEMAS": "0",
        "TASK_MODE": "queue",
        "LOG_LEVEL": "ERROR",
        # The Procfile's variables.
        "WEB_CONCURRENCY": "1",
        "FORWARDED_ALLOW_IPS": "127.0.0.1",  # nginx
        "JOBS_WORKER_CONCURRENCY": "2",
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=120,
    )
    redis = [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with django_db_blocker.unblock(), ExitStack() as stack:
        try:
            stack.enter_context(running(redis, env={}))

            def web(port: int) -> subprocess.Popen:
                argv = procfile_argv("web", {**env, "PORT": str(port)}, overrides={"--host": "127.0.0.1"})
                return stack.enter_context(running(argv, env={**env, "PORT": str(port)}))

            backends = [(port, web(port)) for port in (free_port(), free_port())]
            stack.enter_context(running(procfile_argv("worker", env), env=env))
            # Ready: the database answers, the model is warm.
            ready = [
                ready_or_restarted(web, port, process, headers={"Host": "127.0.0.1"}) for port, process in backends
            ]
            ports = [port for port, _ in ready]
            port_a, port_b = ports
            main = nginx_configuration(
                tmp, upstreams=ports, http_port=http_port, https_port=https_port, cert=cert, key=key
            )
            proxy = stack.enter_context(running([NGINX, "-c", str(main), "-g", "daemon off;"], env={}))
            wait_for(
                f"https://localhost:{https_port}/healthz",
                verify=ssl.create_default_context(cafile=str(cert)),
                process=proxy,
            )
            yield {
                "port": https_port,
                "http_port": http_port,
                "backends": (port_a, port_b),
                "cert": cert,
                "signup_subdomain": signup_subdomain,
                "worlds": django_db_setup,
            }
        finally:
            stack.close()
            database_backends_end(spawned_only=True)


# A stand-in web process for the test below: answers 200 to anything, on the port it is given.
READY_SERVER = """
import http.server, sys
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""


def test_a_web_process_whose_port_was_taken_meanwhile_starts_again_on_another():
    """What made a fresh clone's run wait 300 s and lose the module: the port chosen for a web
    process was taken (by another worker's process) before it bound it, so it exited at once."""
    started: list[subprocess.Popen] = []

    def start(port: int) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, "-c", READY_SERVER, str(port)], stderr=subprocess.DEVNULL))
        return started[-1]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            began = time.monotonic()
            ready, process = ready_or_restarted(start, port, start(port), headers={})
            assert ready != port and process is started[1] and started[0].returncode not in (None, 0)
            assert httpx.get(f"http://127.0.0.1:{ready}/readyz").status_code == 200
            assert time.monotonic() - began < 30
        finally:
            for process in started:
                process_stop(process, timeout=5)


def via_nginx(topology, subdomain: str | None = None, *, source: str | None = None) -> httpx.Client:
    """An HTTPS client of one host through nginx. Python does not resolve *.localhost, so it connects to
    127.0.0.1 (from ``source``, another loopback address, if given) and names the host in SNI, in Host
    and in the certificate check, as a browser would."""
    host = f"{subdomain}.localhost" if subdomain else "localhost"
    context = ssl.create_default_context(cafile=str(topology["cert"]))
    transport = httpx.HTTPTransport(verify=context, local_address=source)

    class Loopback(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            request.extensions["sni_hostname"] = host
            request.url = request.url.copy_with(host="127.0.0.1")
            request.headers["Host"] = f"{host}:{topology['port']}"
            return transport.handle_request(request)

        def close(self) -> None:
            transport.close()

    return httpx.Client(base_url=f"https://{host}:{topology['port']}", transport=Loopback(), timeout=30)


def wss_connect(topology, subdomain: str, token: str):
    import websockets

    return websockets.connect(
        f"wss://{subdomain}.localhost:{topology['port']}/ws/chat/",
        additional_headers={"Authorization": f"Token {token}"},
        host="127.0.0.1",
        port=topology["port"],
        ssl=ssl.create_default_context(cafile=str(topology["cert"])),
        server_hostname=f"{subdomain}.localhost",
        proxy=None,
        open_timeout=20,
        max_queue=None,
    )


# --- The journey of a new organisation ---------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_up(topology):
    subdomain = topology["signup_subdomain"]
    with via_nginx(topology) as http:
        response = http.post(
            "/api/signup/",
            json={
                "organisation": "Topology Ltd",
                "subdomain": subdomain,
                "email": f"owner@{subdomain}.test",
                "password": PASSWORD,
                "plan": "free",
            },
        )
    assert response.status_code == 201, response.text
    return {"subdomain": subdomain, "email": f"owner@{subdomain}.test", **response.json()}


def test_signup_over_https_gives_an_https_tenant_url(signed_up):
    assert signed_up["tenant"]["url"] == f"https://{signed_up['subdomain']}.localhost/"
    assert signed_up["token"]


def test_plain_http_is_redirected_to_https(topology):
    response = httpx.get(f"http://127.0.0.1:{topology['http_port']}/login/", headers={"Host": "acme.localhost"})

    assert response.status_code == 301
    assert response.headers["location"] == "https://acme.localhost/login/"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium-headless-shell is installed by tests/run.sh")
def test_a_browser_logs_in_over_https_with_secure_cookies_and_csrf(topology, signed_up):
    from playwright.sync_api import expect, sync_playwright

    base = f"https://{signed_up['subdomain']}.localhost:{topology['port']}"
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP *.localhost 127.0.0.1"],
            )
            context = browser.new_context(ignore_https_errors=True)  # the test's own CA
            page = context.new_page()
            page.goto(f"{base}/")
            expect(page).to_have_url(f"{base}/login/?next=/")
            page.fill("#id_username", signed_up["email"])
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            expect(page.get_by_role("heading", name="Upload a document")).to_be_visible()
            cookies = {cookie["name"]: cookie for cookie in context.cookies(base)}
            # The same browser, session and origin, but without the form's CSRF token.
            forged = page.evaluate(
                "fetch('/login/', {method: 'POST', body: new URLSearchParams({username: 'x', password: 'y'})})"
                ".then(response => response.status)"
            )
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

    assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httpOnly"]
    assert cookies["csrftoken"]["secure"]
    assert forged == 403


def test_a_document_is_ingested_by_the_job_worker_and_found_by_search(topology, signed_up):
    with via_nginx(topology, signed_up["subdomain"]) as http:
        http.headers["Authorization"] = f"Token {signed_up['token']}"
        created = http.post(
            "/api/documents/",
            json={"title": "Expenses", "content": "Receipts for travel expenses go to finance within a month."},
        )
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 180
        while (status := http.get(f"/api/documents/{created.json()['id']}/").json()["status"]) != "ready":
            assert status != "failed" and time.monotonic() < deadline, status
            time.sleep(0.5)
        results = http.post("/api/search/", json={"query": "where do I send receipts?"}).json()["results"]

    assert [hit["title"] for hit in results] == ["Expenses"]


def test_a_websocket_chat_streams_over_wss(topology, signed_up, anthropic_server):
    anthropic_server.reset()
    anthropic_server.reply = "Send them to finance."

    async def chat():
        async with wss_connect(topology, signed_up["subdomain"], signed_up["token"]) as socket:
            return await ask(socket, "Where do receipts go?")

    frames = asyncio.run(chat())
    anthropic_server.reset()

    assert frames[0]["type"] == "start"
    assert "".join(frame["token"] for frame in frames if frame["type"] == "token") == "Send them to finance."
    assert frames[-1]["type"] == "done"


def test_throttles_key_on_the_real_client_address_and_ignore_a_forged_one(topology, signed_up):
    wrong = {"email": signed_up["email"], "password": "not-the-password"}

    def attempt(client: httpx.Client, forged: str) -> int:
        return client.post("/api/auth/login/", json=wrong, headers={"X-Forwarded-For": forged}).status_code

    with (
        via_nginx(topology, signed_up["subdomain"]) as first,
        via_nginx(topology, signed_up["subdomain"], source="127.0.0.2") as second,
    ):
        # Every attempt claims another address: the throttle still counts them against 127.0.0.1.
        from_first = [attempt(first, f"203.0.113.{i}") for i in range(LOGIN_RATE + 1)]
        # Another real address has its own allowance, whatever address it claims.
        from_second = attempt(second, "127.0.0.1")

    assert from_first == [400] * LOGIN_RATE + [429]
    assert from_second == 400


# --- Several processes behind one proxy --------------------------------------------------------------


def test_wildcard_subdomains_reach_their_tenant_through_nginx(topology):
    acme = topology["worlds"]["acme"]
    with via_nginx(topology, "acme") as http:
        http.headers["Authorization"] = f"Token {acme.member_token}"
        statuses = {http.get("/api/documents/").status_code for _ in range(6)}
    with via_nginx(topology, "globex") as http:
        other = http.get("/api/documents/", headers={"Authorization": f"Token {acme.member_token}"}).status_code
    with via_nginx(topology, "nowhere") as http:
        unknown = http.get("/api/documents/").status_code

    assert statuses == {200}  # spread over both processes
    assert other == 403
    assert unknown == 404


def test_sse_streams_through_nginx_unbuffered(topology, anthropic_server):
    anthropic_server.reset()
    anthropic_server.reply = "a b c d e f"
    anthropic_server.token_delay = 0.1
    acme = topology["worlds"]["acme"]
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


def test_websocket_limits_are_shared_by_both_processes_through_redis(topology, anthropic_server):
    anthropic_server.reset()
    anthropic_server.reply = " ".join(f"w{i}" for i in range(60))
    anthropic_server.token_delay = 0.03
    acme = topology["worlds"]["acme"]

    async def scenario():
        # nginx sends the two sockets to different processes (least connections); the per-user stream
        # limit of 1 still holds because the counter lives in Redis.
        async with (
            wss_connect(topology, "acme", acme.owner_token) as first,
            wss_connect(topology, "acme", acme.owner_token) as second,
        ):
            await first.send(json.dumps({"message": "long answer"}))
            assert (await receive(first))["type"] == "start"
            refused = await ask(second, "me too")
            return refused, await frames_until_end(first)

    refused, frames = asyncio.run(scenario())
    anthropic_server.reset()

    assert refused[-1]["error"]["code"] == "too_many_streams"
    assert frames[-1]["type"] == "done"
    assert "".join(f["token"] for f in frames if f["type"] == "token") == " ".join(f"w{i}" for i in range(60))


def test_an_answer_resumes_on_the_other_process_behind_nginx(topology, anthropic_server):
    anthropic_server.reset()
    reply = " ".join(f"r{i}" for i in range(40))
    anthropic_server.reply = reply
    anthropic_server.token_delay = 0.03
    acme = topology["worlds"]["acme"]

    async def scenario():
        async with wss_connect(topology, "acme", acme.owner_token) as first:
            await first.send(json.dumps({"message": "a long answer, please"}))
            seen = [await receive(first) for _ in range(6)]  # start and five tokens
            # Opened while the first is still up: least_conn sends it to the other process.
            async with wss_connect(topology, "acme", acme.owner_token) as second:
                await first.close()  # the connection drops mid-answer
                await second.send(json.dumps({"type": "resume", "message_id": seen[0]["message_id"], "after": 6}))
                rest = await frames_until_end(second)
        return seen, rest

    seen, rest = asyncio.run(scenario())
    anthropic_server.reset()

    frames = seen + rest
    assert [frame["seq"] for frame in frames] == list(range(1, len(frames) + 1))  # no gap, no repeat
    text = "".join(frame["token"] for frame in frames if frame["type"] == "token")
    assert text == reply and frames[-1]["type"] == "done"
    with via_nginx(topology, "acme") as http:
        http.headers["Authorization"] = f"Token {acme.owner_token}"
        saved = http.get(f"/api/conversations/{frames[0]['conversation_id']}/").json()["messages"][-1]
    assert saved["content"] == text
