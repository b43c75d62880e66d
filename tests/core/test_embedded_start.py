"""Processes that start the embedded PostgreSQL on a data folder that does not exist yet, at the same
moment (the two test workers of a fresh clone's first run, a web process and a job worker): each
joins the one server, which runs with Strata's settings from its first start, and the last to let
go stops it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from core.platform.database.embedded import shared_buffers_mb
from tests.processes import ROOT

pytestmark = pytest.mark.slow

STARTER = """
import sys, time
from pathlib import Path
import psycopg
from core.platform.database.embedded import embedded_server_socket_dir, embedded_server_stop
pgdata, start_at = Path(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start_at - time.time()))
socket_dir = embedded_server_socket_dir(pgdata, database="strata")
with psycopg.connect(host=socket_dir, dbname="strata", user="postgres") as conn:
    mb = "SELECT setting::int * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
    shared_buffers = conn.execute(mb).fetchone()[0]
print(socket_dir, shared_buffers, flush=True)
embedded_server_stop(pgdata)
"""


def postgres_running_in(pgdata: Path) -> bool:
    return any(
        proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or [])
        for proc in psutil.process_iter(attrs=["name", "cmdline"])
    )


def test_processes_starting_at_once_on_a_fresh_data_folder_share_one_server(tmp_path):
    pgdata = tmp_path / "data" / "postgres"
    start_at = time.time() + 3  # past every interpreter's start-up: they ask at the same moment
    starters = [
        subprocess.Popen(  # noqa: S603 - this interpreter and our own module
            [sys.executable, "-c", STARTER, str(pgdata), str(start_at)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(starter.wait(120), *starter.communicate()) for starter in starters]

    assert [code for code, _, _ in results] == [0, 0, 0, 0], [err[-2000:] for _, _, err in results]
    assert len({out.strip() for _, out, _ in results}) == 1  # one server's socket folder
    # from its first start: a quarter of the memory up to 1 GB, not PostgreSQL's 128 MB
    assert int(results[0][1].split()[1]) == shared_buffers_mb() >= 128
    assert (pgdata / "PG_VERSION").exists()
    deadline = time.monotonic() + 30
    while postgres_running_in(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not postgres_running_in(pgdata), "the last process to let go stops the server"
