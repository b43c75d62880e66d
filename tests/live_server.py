"""A real uvicorn server for the ASGI app, in a thread of the test process (same test database)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveAsgiServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from core.project.asgi import application

        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", ws="websockets-sansio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-asgi", daemon=True)

    def start(self) -> LiveAsgiServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def host_url(self, subdomain: str, scheme: str = "http") -> str:
        return f"{scheme}://{subdomain}.localhost:{self.port}"


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


def process_stop(process: subprocess.Popen[bytes], *, timeout: float = 30) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", headers={"Host": "localhost"}, timeout=5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        process_stop(self.process)


def wait_until(predicate: Callable[[], T], *, timeout: float = 60, every: float = 0.1, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something true; that value, or AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} never became true within {timeout} s")
