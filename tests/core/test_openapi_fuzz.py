"""schemathesis against the live server, both schemas: no server error, no response outside the schema,
no undocumented status, across generated (and deliberately invalid) requests, with stateful links."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.factories import PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

ST = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "negative_data_rejection",
    ]
)
# Each schema gets this many seconds at most (the whole fuzzing stays under a minute of the suite).
MAX_SECONDS = 25


def fuzz(server, host: str, *extra: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    report = tmp_path / f"{host}.ndjson"
    return subprocess.run(
        [
            ST,
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.url}/api/schema/",
            "--header",
            f"Host: {host}:{server.port}",
            *extra,
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--max-time",
            str(MAX_SECONDS),
            "--workers",
            "1",
            "--seed",
            "1",
            "--request-timeout",
            "60",
            "--suppress-health-check",
            "all",
            "--warnings",
            "off",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS * 3,
        cwd=tmp_path,  # schemathesis and hypothesis keep their caches in the working directory
    )


@pytest.fixture(autouse=True)
def _warm_embedder() -> None:
    # The live server shares this process: its first search or chat must not wait for the model to load.
    from ai.embedding.embedders import get_embedder

    get_embedder().embed_query("warm up")


@pytest.fixture
def fuzzed_tenant(asgi_server, live_worlds) -> tuple[str, str]:
    """A tenant of its own, made through the public API (committed), so fuzzing touches no other test's data."""
    subdomain = f"fz{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{asgi_server.url}/api/signup/",
        headers={"Host": f"localhost:{asgi_server.port}"},
        json={
            "organisation": "Fuzz",
            "subdomain": subdomain,
            "email": f"owner@{subdomain}.test",
            "password": PASSWORD,
            "plan": "free",
        },
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return subdomain, response.json()["token"]


def test_the_tenant_api_holds_to_its_schema(asgi_server, fuzzed_tenant, tmp_path):
    subdomain, token = fuzzed_tenant

    done = fuzz(
        asgi_server,
        f"{subdomain}.localhost",
        "--header",
        f"Authorization: Token {token}",
        # Logging out would delete the token the rest of the run uses.
        "--exclude-path",
        "/api/auth/logout/",
        tmp_path=tmp_path,
    )

    assert done.returncode == 0, done.stdout[-20000:]


def test_the_public_api_holds_to_its_schema(asgi_server, live_worlds, tmp_path, settings):
    settings.STRIPE_WEBHOOK_SECRET = "whsec_fuzzing"  # configured, so a bad signature is a 400, not a 503
    done = fuzz(asgi_server, "localhost", tmp_path=tmp_path)

    assert done.returncode == 0, done.stdout[-20000:]


def test_each_host_serves_its_own_schema(asgi_server, live_worlds):
    def paths(host: str) -> set[str]:
        response = httpx.get(
            f"{asgi_server.url}/api/schema/",
            headers={"Host": f"{host}:{asgi_server.port}", "Accept": "application/json"},
        )
        assert response.status_code == 200
        return set(response.json()["paths"])

    public, tenant = paths("localhost"), paths("acme.localhost")

    assert {"/api/signup/", "/api/plans/", "/api/billing/webhook/"} <= public
    assert not {"/api/documents/", "/api/chat/"} & public
    assert {"/api/documents/", "/api/chat/", "/api/search/", "/api/usage/"} <= tenant
    assert not {"/api/signup/", "/api/plans/"} & tenant
