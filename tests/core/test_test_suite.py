"""The suite itself: passwords hash fast but admitted, here and in the processes it starts, while a
deployment keeps Django's iterations (tests/hashers.py); under CI a missing tool fails, not skips."""

import os
import subprocess
import sys

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, get_hasher, make_password

from core.platform.passwords import AdmittedPBKDF2PasswordHasher
from tests.hashers import FastAdmittedPBKDF2PasswordHasher
from tests.processes import ROOT

PRINT_HASHER = (
    "from django.contrib.auth.hashers import get_hasher; h = get_hasher(); print(type(h).__name__, h.iterations)"
)


def test_the_suite_hashes_passwords_with_few_iterations_still_admitted():
    hasher = get_hasher()

    assert isinstance(hasher, AdmittedPBKDF2PasswordHasher)
    assert make_password("secret").startswith(f"pbkdf2_sha256${FastAdmittedPBKDF2PasswordHasher.iterations}$")
    assert hasher.iterations < PBKDF2PasswordHasher.iterations // 100


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("the suite's", f"FastAdmittedPBKDF2PasswordHasher {FastAdmittedPBKDF2PasswordHasher.iterations}"),
        ("a deployment's", f"AdmittedPBKDF2PasswordHasher {PBKDF2PasswordHasher.iterations}"),
    ],
)
def test_a_process_hashes_with_the_hasher_its_environment_names(environment, expected):
    env = dict(os.environ)
    if environment == "a deployment's":
        env.pop("PASSWORD_HASHER")
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", PRINT_HASHER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.stdout.strip() == expected, result.stderr


PROBES = """
import pytest


def test_needs_redis():
    pytest.skip("redis-server is installed by tests/run.sh")


@pytest.mark.skipif(True, reason="Debian chromium is not installed")
def test_needs_chromium():
    pass


def test_skipped_for_another_reason():
    pytest.skip("not on this platform")
"""


# A skip at setup (a skipif mark) that fails is reported as an error; either fails the run.
@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed, 1 skipped, 1 error"), ("", "3 skipped")])
def test_under_ci_a_test_skipped_for_a_missing_tool_fails(tmp_path, ci, outcome, pytestconfig):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    (tmp_path / "test_probes.py").write_text(PROBES)
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run(
        # The suite's own options (pyproject.toml: the plugins it leaves unloaded, too).
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *pytestconfig.getini("addopts"), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert outcome in result.stdout, result.stdout + result.stderr
    assert result.returncode == (1 if ci else 0)
