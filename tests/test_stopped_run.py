"""A `run` stopped (Ctrl-C, SIGTERM) once nothing is left for it ends as a normal end would:
its batch finished, its results written. One stopped with work left says how to go on (see
test_cli's stop test)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import serving
from tests.helpers import ROOT, wait_until
from veobatch.store.tables import Batch

EXAMPLE = ROOT / "jobs.example.yaml"


class SlowReceiver(ThreadingHTTPServer):
    """A webhook receiver that holds each call until `answer` is set."""

    daemon_threads = True
    called: threading.Event
    answer: threading.Event


class HoldingHandler(BaseHTTPRequestHandler):
    server: SlowReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.called.set()
        self.server.answer.wait(60)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def slow_receiver() -> Iterator[SlowReceiver]:
    server = SlowReceiver(("127.0.0.1", 0), HoldingHandler)
    server.called, server.answer = threading.Event(), threading.Event()
    try:
        with serving(server):
            yield server
    finally:
        server.answer.set()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_run_stopped_at_its_very_end_writes_its_results(
    tmp_path: Path, slow_receiver: SlowReceiver, stop: signal.Signals
) -> None:
    """The stop comes while the run tells the batch's webhook that it finished: every row
    succeeded and every video is on disk, so the run ends as if nothing had stopped it."""
    database = tmp_path / "veo-batch.db"
    env = {
        **os.environ,
        "VEO_DATABASE_URL": f"sqlite:///{database}",
        "VEO_WEBHOOK_SECRET": "webhook-secret-for-tests",
        "VEO_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    hook = f"http://127.0.0.1:{slow_receiver.server_address[1]}/hook"
    command = [sys.executable, "-m", "veobatch", "run", str(EXAMPLE), "--mock"]
    command += ["--download", "videos", "--webhook", hook, "-o", "out.csv"]
    running = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_until(slow_receiver.called.is_set, 120, "the webhook to be called")
        running.send_signal(stop)
        stdout, stderr = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert running.returncode == 0, stderr.decode()
    assert b"stopped, with nothing left to do: writing the results" in stderr
    assert b"results: out.csv" in stdout
    with (tmp_path / "out.csv").open(encoding="utf-8") as results:
        rows = list(csv.DictReader(results))
    assert len(rows) == 6
    assert {row["status"] for row in rows} == {"succeeded"}
    assert all(Path(row["video_path"]).is_file() for row in rows)
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        assert conn.execute(sa.select(Batch.state)).scalar_one() == "finished"
    engine.dispose()
