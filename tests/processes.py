"""Other processes for tests and benchmarks: Strata's processes as deploy/Procfile describes them,
``manage.py`` commands, the app served by a process of its own; free ports, the test database's URL
for them, committing so they see rows; and the waits (an HTTP probe, any condition).
The app served in a thread of the test process is tests/live_server.py."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "deploy" / "Procfile"
PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")
T = TypeVar("T")
# httpx parses the CA bundle into a new SSL context for every client it makes (~25 ms of CPU), even one
# that only ever speaks plain http://: the suite's short-lived clients share this one (verify=TLS).
TLS = httpx.create_ssl_context()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- waiting -------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T], *, timeout: float = 60, every: float = 0.1, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something true; that value, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} never became true within {timeout} s")


def wait_for(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 120,
    every: float = 0.2,
    healthy: Callable[[int], bool] = (200).__eq__,
    process: subprocess.Popen | None = None,
    **client: object,
) -> None:
    """Poll ``url`` until it answers 200 (a probe, as a load balancer would), or a status ``healthy``
    accepts; AssertionError after ``timeout``, or at once when ``process`` (the server) has exited."""
    deadline = time.monotonic() + timeout
    last = None
    client.setdefault("verify", TLS)
    with httpx.Client(headers=dict(headers or {}), timeout=3, **client) as probe:  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"the process serving {url} exited with {process.returncode}")
            try:
                response = probe.get(url)
                if healthy(response.status_code):
                    return
                last = response.status_code
            except httpx.TransportError as exc:
                last = exc
            time.sleep(every)
    raise AssertionError(f"{url} never answered 200 (last: {last!r})")


# --- starting and stopping -----------------------------------------------------------------------


def procfile() -> dict[str, list[str]]:
    """Each process's command as tokens, ``${NAME}`` placeholders left in place."""
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = shlex.split(command)
    return processes


def ready_or_restarted(
    start: Callable[[int], subprocess.Popen],
    port: int,
    process: subprocess.Popen,
    *,
    headers: Mapping[str, str],
    timeout: float = 300,
    attempts: int = 3,
) -> tuple[int, subprocess.Popen]:
    """A server ``start``-ed on ``port`` as ``process``, once its ``/readyz`` says ready: its port and
    process. A port is free when chosen and may be taken before the server binds it (the suite's
    other workers start processes and open connections all the time): a process that exits before
    it is ready is started again on another port, at once, not after ``timeout``."""
    for attempt in range(attempts):
        try:
            wait_for(f"http://127.0.0.1:{port}/readyz", headers=headers, timeout=timeout, process=process)
            return port, process
        except AssertionError:
            if process.poll() is None or attempt == attempts - 1:
                process_stop(process, timeout=10)  # not ready in time: stopped, not left behind
                raise
            port = free_port()
            process = start(port)
    raise AssertionError("unreachable")


def procfile_argv(name: str, values: Mapping[str, str], *, overrides: Mapping[str, str] | None = None) -> list[str]:
    """The Procfile's ``name`` command with its placeholders filled in, run by this interpreter's
    environment; ``overrides`` replaces the values of named options (``--host`` for loopback)."""
    argv = [PLACEHOLDER.sub(lambda match: values[match.group(1)], token) for token in procfile()[name]]
    for option, value in (overrides or {}).items():
        argv[argv.index(option) + 1] = value
    program = {"python": sys.executable, "uvicorn": str(Path(sys.executable).with_name("uvicorn"))}
    return [program.get(argv[0], argv[0]), *argv[1:]]


def process_stop(process: subprocess.Popen, *, timeout: float = 30, signum: int = signal.SIGTERM) -> None:
    """Stop ``process`` as an orchestrator does: ``signum`` (SIGTERM), then SIGKILL after ``timeout``."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running(argv: list[str], *, env: Mapping[str, str], stop_timeout: float = 40) -> Iterator[subprocess.Popen]:
    """Run a process from the project root for the block, then SIGTERM it (as an orchestrator does)."""
    process = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env})  # noqa: S603 - our own commands
    try:
        yield process
    finally:
        process_stop(process, timeout=stop_timeout)


def manage_py_process(*args: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """``python manage.py <args>`` as a real process of this project (a worker, say)."""
    output = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=output,
        stderr=subprocess.STDOUT,
    )


class ServedProcess:
    """The ASGI app under uvicorn in a process of its own (``tests/serve_app.py``), on the test database."""

    def __init__(self, *flags: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "tests.serve_app", str(self.port), *flags],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "DATABASE_URL": live_database_url(), **env},
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        self.log = log

    def wait_ready(self, timeout: float = 120) -> ServedProcess:
        """Until ``/readyz`` says ready: the database answers and the embedding model is warm."""
        try:
            wait_for(
                f"{self.url}/readyz", headers={"Host": "localhost"}, timeout=timeout, every=0.1, process=self.process
            )
        except AssertionError as exc:
            raise RuntimeError(f"server did not start ({exc}):\n{self.log.read_text()}") from None
        return self

    def stop(self) -> None:
        process_stop(self.process)


# --- the test database, for other processes --------------------------------------------------------


def live_database_url() -> str:
    """A DATABASE_URL for this run's test database, for the processes a test starts."""
    from django.db import connection

    params = connection.get_connection_params()
    return f"postgres://{params['user']}@/{params['dbname']}?host={params['host']}"


def committed(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``work`` on a connection of its own and commit for real (the test's transaction is not its):
    what other processes, such as a job worker or a uvicorn started by the test, can then see."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        from django.db import connection

        try:
            result.append(work(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="committed")
    thread.start()
    thread.join(300)
    if errors:
        raise errors[0]
    return result[0]


# What processes a test starts call themselves in pg_stat_activity (DB_APPLICATION_NAME), so that
# ending their connections afterwards leaves this process's own alone (the session's live server,
# its job connections), which other tests of this worker go on using.
SPAWNED_APPLICATION_NAME = "strata-test-spawned"


def database_backends_end(*, spawned_only: bool = False) -> None:
    """End other connections to the test database (servers the test started leave theirs behind,
    and a test database with connections cannot be dropped), then start this process's pool
    afresh: its idle connections may be among those ended, and the next test would borrow one.

    ``spawned_only`` ends just the connections of processes started with SPAWNED_APPLICATION_NAME:
    what a module's fixture does, while the session goes on."""
    from django.db import connection

    spawned = " AND application_name = %s" if spawned_only else ""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = current_database() AND pid <> pg_backend_pid(){spawned}",
            [SPAWNED_APPLICATION_NAME] if spawned_only else [],
        )
    connection.close()
    connection.close_pool()
