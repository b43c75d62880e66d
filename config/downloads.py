"""Files made for one person to download (their data, a workspace's archive): stored in EXPORTS_DIR
and reached by a signed link that expires after EXPORT_LINK_MAX_AGE seconds.

The link names the file and the person it was made for; the download view also wants that person
signed in on the same host, so a forwarded e-mail gives nobody else the file. With several
machines, EXPORTS_DIR must be a volume that the job workers and the web processes share.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core import signing

from core.platform.exceptions import ApplicationError
from core.platform.jobs import app, public_task

logger = logging.getLogger(__name__)

_SALT = "strata.download"


@dataclass(frozen=True)
class Download:
    path: Path
    user_id: int
    kind: str  # "account" or "tenant"
    tenant_id: int | None
    filename: str  # what the browser saves it as


def _folder() -> Path:
    folder = Path(settings.EXPORTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def download_file_write() -> Iterator[tuple[IO[bytes], str]]:
    """A new file in EXPORTS_DIR to write into, and its name; it appears under that name only once
    written whole (a failure leaves nothing behind)."""
    name = f"{secrets.token_urlsafe(24)}.zip"
    part = tempfile.NamedTemporaryFile("wb", dir=_folder(), suffix=".part", delete=False)
    try:
        with part:
            yield part, name
        os.replace(part.name, _folder() / name)
    except BaseException:
        Path(part.name).unlink(missing_ok=True)
        raise


def download_token(*, name: str, user_id: int, kind: str, tenant_id: int | None, filename: str) -> str:
    return signing.dumps(
        {"name": name, "user": user_id, "kind": kind, "tenant": tenant_id, "filename": filename}, salt=_SALT
    )


def download_open(*, token: str) -> Download:
    """The file a link names, or ApplicationError: 410 once expired or gone, 404 if not a link of ours."""
    try:
        data = signing.loads(token, salt=_SALT, max_age=settings.EXPORT_LINK_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise ApplicationError("This download link has expired.", code="link_expired", status=410) from exc
    except signing.BadSignature as exc:
        raise ApplicationError("This download link is not valid.", code="link_invalid", status=404) from exc
    path = _folder() / Path(str(data["name"])).name
    if not path.is_file():
        raise ApplicationError("This download is no longer available.", code="link_expired", status=410)
    return Download(
        path=path, user_id=data["user"], kind=data["kind"], tenant_id=data.get("tenant"), filename=data["filename"]
    )


def downloads_prune(*, now: float | None = None) -> int:
    """Delete files whose links have expired (and parts a dead job left); how many were deleted."""
    cutoff = (now or time.time()) - settings.EXPORT_LINK_MAX_AGE
    deleted = 0
    for path in _folder().iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:  # another worker's prune got there first
            continue
    return deleted


@app.periodic(cron="41 * * * *")
@public_task(name="config.downloads_prune", queue="maintenance", queueing_lock="config.downloads_prune")
def downloads_prune_job(timestamp: int) -> None:
    deleted = downloads_prune()
    if deleted:
        logger.info("deleted %s expired download(s)", deleted)
