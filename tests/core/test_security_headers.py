"""Production mode: HTTPS only (redirect, HSTS), secure headers, and `manage.py check --deploy` clean."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "STRATA_PRODUCTION": "true",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ANTHROPIC_API_KEY": "sk-ant-production-check",
    "DJANGO_SETTINGS_MODULE": "config.settings",
}


def run_in_production(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**env, **PRODUCTION_ENV}, capture_output=True, text=True, timeout=180
    )


def test_check_deploy_is_clean_in_production_mode():
    done = run_in_production("manage.py", "check", "--deploy", "--fail-level", "WARNING")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client()
secure = client.get("/healthz", secure=True, HTTP_HOST="localhost")
plain = client.get("/api/plans/", HTTP_HOST="localhost")
probe = client.get("/healthz", HTTP_HOST="localhost")  # plain HTTP, as a cluster probe asks
print(json.dumps({
    "secure": dict(secure.headers), "plain_status": plain.status_code, "plain_location": plain.get("Location"),
    "probe_status": probe.status_code,
}))
"""


@pytest.fixture(scope="module")
def production_responses():
    done = run_in_production("-c", PROBE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_sends_hsts_for_every_subdomain(production_responses):
    hsts = production_responses["secure"]["Strict-Transport-Security"]

    assert "max-age=31536000" in hsts
    assert "includeSubDomains" in hsts


def test_production_redirects_plain_http_to_https_except_the_probes(production_responses):
    assert production_responses["plain_status"] == 301
    assert production_responses["plain_location"] == "https://localhost/api/plans/"
    assert production_responses["probe_status"] == 200


def test_production_sends_the_secure_browser_headers(production_responses):
    headers = production_responses["secure"]

    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_pages_carry_the_content_security_policy(acme):
    from tests.conftest import host_client

    response = host_client(acme.host).get("/login/")

    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert response["X-Frame-Options"] == "DENY"
