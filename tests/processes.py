"""Strata's processes as deploy/Procfile describes them, started as real processes by tests and benchmarks."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "deploy" / "Procfile"
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def procfile() -> dict[str, list[str]]:
    """Each process's command as tokens, ``${NAME}`` placeholders left in place."""
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    return processes


def procfile_argv(name: str, values: Mapping[str, str], *, overrides: Mapping[str, str] | None = None) -> list[str]:
    """The Procfile's ``name`` command with its placeholders filled in, run by this interpreter's
    environment; ``overrides`` replaces the values of named options (``--host`` for loopback)."""
    argv = [PLACEHOLDER.sub(lambda match: values[match.group(1)], token) for token in procfile()[name]]
    for option, value in (overrides or {}).items():
        argv[argv.index(option) + 1] = value
    program = {"python": sys.executable, "uvicorn": str(Path(sys.executable).with_name("uvicorn"))}
    return [program.get(argv[0], argv[0]), *argv[1:]]


@contextmanager
def running(argv: list[str], *, env: Mapping[str, str], stop_timeout: float = 40) -> Iterator[subprocess.Popen]:
    """Run a process from the project root for the block, then SIGTERM it (as an orchestrator does)."""
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env})  # noqa: S603 - our own commands
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 120, **client: object) -> None:
    """Poll ``url`` until it answers 200 (a probe, as a load balancer would)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=dict(headers or {}), timeout=3, **client)  # type: ignore[arg-type]
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200 (last: {last!r})")
