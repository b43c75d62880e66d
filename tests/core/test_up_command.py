import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.processes import ROOT, free_port, wait_for, wait_until


def start_up(data_dir: Path, port: int) -> tuple[subprocess.Popen, list[str]]:
    env = {
        **os.environ,
        "STRATA_DATA_DIR": str(data_dir),
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        "TASK_MODE": "queue",
    }
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            raise AssertionError("manage.py up exited:\n" + "".join(lines))
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    wait_for(f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"}, timeout=10, every=0.1)
    return process, lines


def line_with(process: subprocess.Popen, lines: list[str], text: str, timeout: float) -> str:
    """Read the output on until a line holds ``text`` (the server logs lines of its own between)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        lines.append(line)
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r} within {timeout} s:\n" + "".join(lines[-30:]))


def postgres_running_in(data_dir: Path) -> bool:
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def stop(process: subprocess.Popen, signum: int = signal.SIGINT) -> None:
    process.send_signal(signum)
    process.wait(timeout=60)


def children_of(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder outside pytest's tmp tree: every pytest process resets that tree to 0700, and
    the embedded server runs as another user (embedded_postgres) that must traverse it."""
    with tempfile.TemporaryDirectory(prefix="strata-up-") as folder:
        yield Path(folder) / "data"


@pytest.mark.slow
def test_up_starts_the_platform_with_a_demo_tenant_and_a_worker_and_stops_cleanly(data_dir):
    port = free_port()
    process, lines = start_up(data_dir, port)
    try:
        output = "".join(lines)
        credentials = json.loads((data_dir / "credentials.json").read_text())
        assert f"http://demo.localhost:{port}/" in output
        assert credentials["demo_password"] in output
        assert credentials["operator_password"] in output
        assert "Answers:                offline" in output
        # "Up" only once a person can search: ready (the model warm) and a search answered.
        up = line_with(process, lines, "Strata is up:", timeout=300)
        assert "a first search answered in" in up
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", headers={"Host": "localhost"})
        assert ready.status_code == 200, ready.text

        base = f"http://127.0.0.1:{port}"
        demo = {"Host": f"demo.localhost:{port}"}
        login = httpx.post(
            f"{base}/api/auth/login/",
            json={"email": credentials["demo_email"], "password": credentials["demo_password"]},
            headers=demo,
        )
        assert login.status_code == 200
        auth = {**demo, "Authorization": f"Token {login.json()['key']}"}
        created = httpx.post(
            f"{base}/api/documents/", json={"title": "Rota", "content": "The night shift starts at ten."}, headers=auth
        )
        assert created.status_code == 201
        # The job worker that up started beside the server ingests it.
        wait_until(
            lambda: (
                httpx.get(f"{base}/api/documents/{created.json()['id']}/", headers=auth).json()["status"] == "ready"
            ),
            timeout=180,
            what="the worker ingested the document",
        )
        wait_until(lambda: httpx.get(f"{base}/readyz", headers=demo).status_code == 200, timeout=180, what="ready")
        admin = httpx.get(f"{base}/admin/login/", headers={"Host": f"localhost:{port}"})
        assert admin.status_code == 200
        worker = [child for child in children_of(process) if "worker" in " ".join(child.cmdline())]
        assert worker, "manage.py up runs a job worker"
        # Mail goes out from that worker, as one .eml file per message in the data folder.
        assert f"Mail:                   files in {data_dir / 'mail'}/" in output
        reset = httpx.post(f"{base}/api/auth/password/reset/", json={"email": credentials["demo_email"]}, headers=demo)
        assert reset.status_code == 200
        mail = wait_until(lambda: list((data_dir / "mail").glob("*.eml")), what="the reset e-mail file")
        assert f"http://demo.localhost:{port}/reset/" in mail[0].read_text()
    finally:
        stop(process)
    assert process.returncode == 0
    assert not any(child.is_running() for child in worker), "the worker outlived Ctrl-C"
    assert not postgres_running_in(data_dir), "the embedded database outlived Ctrl-C"

    again, lines = start_up(data_dir, port)
    worker = [child for child in children_of(again) if "worker" in " ".join(child.cmdline())]
    try:
        assert credentials["demo_password"] in "".join(lines), "a second run reuses the same data"
    finally:
        stop(again, signal.SIGTERM)  # what supervisors and containers send
    assert again.returncode == 0
    wait_until(lambda: not any(child.is_running() for child in worker), timeout=30)
    assert not postgres_running_in(data_dir), "the embedded database outlived SIGTERM"


def test_the_summary_says_which_mode_each_part_runs_in(settings):
    from config.bootstrap import Credentials, platform_summary

    credentials = Credentials("ops@example.com", "pw", "owner@demo.example.com", "pw2")
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = "/data/mail"
    local = "\n".join(platform_summary(credentials))
    assert "Answers:                offline" in local
    assert "Billing:                local only" in local and "free plans only" in local
    assert "Mail:                   files in /data/mail/ (one .eml per message" in local
    assert "Debug pages" not in local

    settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_MODEL = "sk-ant-x", "claude-sonnet-4-6"
    settings.STRIPE_SECRET_KEY = "sk_test_123"
    settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT = (
        "django.core.mail.backends.smtp.EmailBackend",
        "mx",
        587,
    )
    settings.DEBUG = True
    hosted = "\n".join(platform_summary(credentials))
    assert "Answers:                Claude (claude-sonnet-4-6)" in hosted
    assert "Billing:                Stripe (test keys)" in hosted
    assert "Mail:                   sent by SMTP through mx:587" in hosted
    assert "Debug pages:            on" in hosted
