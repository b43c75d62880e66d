"""The job worker that ``manage.py up`` runs beside the web server, as a child process that ends
with it (Ctrl-C, SIGTERM, or even SIGKILL of the parent)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's normal shutdown still stops the child


@contextmanager
def worker_process(*, manage_py: Path, concurrency: int, timeout: float = 40.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``manage.py worker`` for the duration of the block; SIGTERM it (jobs finish) on the way out."""
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(manage_py), "worker", "--concurrency", str(concurrency), "--name", "up-worker"],
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
