"""The secret key: production requires SECRET_KEY; elsewhere each data folder makes its own random
key on first start and keeps it (mode 0600), so no public key signs links."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from django.core import signing

from core.models import User
from tenants.services import accounts

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_DEVELOPMENT_KEY = "strata-insecure-development-key-change-me"  # what development once signed with


def settings_secret_key(data_dir: Path, **env: str) -> subprocess.Popen:
    """A fresh process's SECRET_KEY for ``data_dir`` (settings are read at start-up)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "STRATA_PRODUCTION")}
    return subprocess.Popen(
        [sys.executable, "-c", "import django; from django.conf import settings; print(settings.SECRET_KEY)"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", "STRATA_DATA_DIR": str(data_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out.strip().splitlines()[-1]


def test_a_link_signed_with_the_public_development_key_is_refused(acme):
    forged = signing.dumps(
        {"user": acme.member.pk, "from": acme.member.email, "to": "attacker@example.com"},
        key=PUBLIC_DEVELOPMENT_KEY,
        salt=accounts._EMAIL_CHANGE_SALT,
    )

    response = acme.client().post(f"/account/email/{forged}/")

    assert response.status_code == 404
    assert User.objects.get(pk=acme.member.pk).email == acme.member.email


def test_each_data_folder_gets_its_own_random_key_kept_private_across_restarts(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    # Processes starting together on a fresh folder agree on one key.
    together = [settings_secret_key(first) for _ in range(3)] + [settings_secret_key(second)]
    keys = [finished(process) for process in together]

    assert len(set(keys[:3])) == 1
    assert keys[0] != keys[3]
    assert len(keys[0]) >= 50 and PUBLIC_DEVELOPMENT_KEY not in keys
    assert finished(settings_secret_key(first)) == keys[0]  # a restart keeps it
    files = [path for path in first.iterdir() if "secret" in path.name]
    assert len(files) == 1  # no temporary file left over
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_an_explicit_secret_key_wins_and_production_requires_one(tmp_path):
    assert finished(settings_secret_key(tmp_path, SECRET_KEY="k" * 60)) == "k" * 60

    production = settings_secret_key(tmp_path, STRATA_PRODUCTION="true", ALLOW_OFFLINE_LLM="true")
    _, err = production.communicate(timeout=120)

    assert production.returncode != 0
    assert "SECRET_KEY" in err.strip().splitlines()[-1]
    assert not (tmp_path / "secret_key").exists()
