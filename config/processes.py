"""The job worker that ``manage.py up`` runs beside the web server: a child process, restarted
with backoff if it dies, that ends with its parent (Ctrl-C, SIGTERM, or even SIGKILL of it)."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's normal shutdown still stops the child


class WorkerSupervisor:
    """Keeps one ``manage.py worker`` child running until ``stop()``.

    A child that exits unasked (killed, crashed) is started again after a wait that doubles from
    ``min_backoff`` to ``max_backoff`` while it keeps dying young, and starts over once a child
    has lived a while. The child runs in its own process group, so a Ctrl-C at the terminal
    reaches only the parent, which stops it once, in order (SIGTERM, then SIGKILL after
    ``stop_timeout``: a little more than the worker's own shutdown grace).
    """

    def __init__(
        self,
        *,
        argv: list[str],
        stop_timeout: float,
        min_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.argv = argv
        self.stop_timeout = stop_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.child: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    def start(self) -> WorkerSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self.child = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
                self.argv,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                start_new_session=True,
            )
            self.starts += 1
            self._started_at = time.monotonic()

    def _supervise(self) -> None:
        backoff = self.min_backoff
        while not self._stopping.is_set():
            child = self.child
            assert child is not None
            code = child.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - self._started_at > 2 * self.max_backoff:
                backoff = self.min_backoff  # it had been running fine: a new failure
            logger.error("the job worker exited with %s; starting another in %.0f s", code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff)
            self._spawn()

    def stop(self) -> None:
        """Stop supervising and stop the child (SIGTERM, SIGKILL after ``stop_timeout``)."""
        with self._lock:
            self._stopping.set()
            child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.error("the job worker did not stop within %.0f s; killing it", self.stop_timeout)
            child.kill()
            child.wait()


@contextmanager
def worker_process(*, manage_py: Path, concurrency: int, grace: float) -> Iterator[WorkerSupervisor]:
    """Run a supervised ``manage.py worker`` for the duration of the block, stopped on the way out."""
    supervisor = WorkerSupervisor(
        argv=[sys.executable, str(manage_py), "worker", "--concurrency", str(concurrency), "--name", "up-worker"],
        stop_timeout=grace + 10,
    ).start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
