"""Threads that run below the priority of serving: CPU work that may wait for a request's own steps."""

from __future__ import annotations

import contextlib
import os
import threading


def thread_run_below(niceness: int) -> None:
    """Run the calling thread ``niceness`` steps nicer than it was started (Linux gives each thread
    its own nice value; elsewhere, or when the OS refuses, it runs as it is)."""
    if niceness <= 0:
        return
    with contextlib.suppress(OSError):
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + niceness)
