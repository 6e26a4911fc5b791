"""Several processes on one SQLite file: a scheduler, a worker's pool of processes, `status`
and the HTTP API side by side, as a small team runs them on one machine.

Each process here is a real `veo-batch` process (nothing shared but the file and Redis), so a
process that drops another's locks on the file, or checkpoints the WAL under it, shows up as
`database disk image is malformed`, `disk I/O error` or rows that never move.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import sqlalchemy as sa

from tests.conftest import MOCK_KEY, REDIS_URL
from tests.helpers import ROOT, URL, stop_group, veo_batch_server, wait_until
from veobatch.store import database

ROWS = 60
BROKEN = ("malformed", "disk I/O error", "file is not a database", "database is locked")


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "veobatch", *args],
            env=env,
            cwd=ROOT,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def mock_api() -> Iterator[str]:
    with veo_batch_server(["mock-api", "--key", MOCK_KEY], "/_mock/stats") as url:
        yield url


def test_scheduler_worker_pool_and_readers_share_one_sqlite_file(
    tmp_path: Path, redis_client: redis.Redis, mock_api: str
) -> None:
    db = tmp_path / "shared.db"
    env = {
        **os.environ,
        "VEO_DATABASE_URL": f"sqlite:///{db}",
        "VEO_REDIS_URL": REDIS_URL,
        "VEO_API_BASE": mock_api,
        "VEO_API_KEY": MOCK_KEY,
        "VEO_POLL_DELAY": "0.1",
        "VEO_POLL_INTERVAL": "0.1-0.5",
    }
    jobs = tmp_path / "jobs.csv"
    jobs.write_text(
        "prompt,model,images\n" + "".join(f"a fox number {n},veo3.1,{URL}\n" for n in range(ROWS))
    )
    cli = [sys.executable, "-m", "veobatch"]
    subprocess.run([*cli, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run(
        [*cli, "load", str(jobs), "--batch", "shared"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("scheduler", "worker")}
    scheduler = _start(["scheduler", "--tick", "0.2"], env, logs["scheduler"])
    worker = _start(["worker", "-c", "2"], env, logs["worker"])
    try:
        with veo_batch_server(["serve", "--no-auth"], "/readyz", env) as served:

            def finished() -> bool:
                # A reader process (`status`) and the HTTP API, while the others write.
                status = subprocess.run(
                    [*cli, "status", "shared", "--json"],
                    check=False,
                    env=env,
                    cwd=ROOT,
                    capture_output=True,
                )
                assert status.returncode == 0, status.stderr.decode()
                metrics = httpx.get(f"{served}/metrics", timeout=10)  # reads the rows
                assert metrics.status_code == 200, metrics.text[-2000:]
                return '"finished"' in status.stdout.decode()

            wait_until(finished, 180, "the batch to finish on the shared SQLite file")
    finally:
        stop_group(worker, 90)  # (a worker's stop is bounded by its requests' deadline)
        stop_group(scheduler, 30)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        counts = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
    assert counts == {"succeeded": ROWS}
    for name, log in logs.items():
        text = log.read_text(errors="replace")
        assert not [word for word in BROKEN if word in text], f"{name} log:\n{text[-3000:]}"


def _open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on `path`."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux's /proc")
def test_a_forked_child_inherits_no_open_connection_to_the_file(tmp_path: Path) -> None:
    """A child process (an embedded run's lane) must not hold a copy of its parent's SQLite
    connection: closing that copy would drop the child's own locks on the file."""
    db = tmp_path / "forked.db"
    engine = database.open_database(f"sqlite:///{db}")
    with engine.connect() as conn:  # an idle connection stays in the pool
        conn.execute(sa.text("SELECT 1"))
    assert _open_files(db) == 1
    context = multiprocessing.get_context("fork")
    found = context.Queue()
    child = context.Process(target=lambda: found.put(_open_files(db)))
    child.start()
    inherited = found.get(timeout=30)
    child.join(timeout=30)
    engine.dispose()
    assert inherited == 0
