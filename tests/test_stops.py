"""Stops are bounded: SIGTERM ends `veo-batch run` and a worker at once while the relay drips
a poll's answer or the video host drips a video (real processes, the mock over HTTP); what was
in flight is handed back, due again, and a download's `.part` is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import pytest
import sqlalchemy as sa

from tests.conftest import MOCK_KEY
from tests.helpers import wait_until
from tests.stack import Stack
from veobatch.errors import ExitCode
from veobatch.lifecycle import transitions
from veobatch.provider.mock import MockProvider
from veobatch.store import database
from veobatch.store.tables import Job

# Far below the requests' own deadlines here (VEO_READ_TIMEOUT=30, VEO_DOWNLOAD_TIMEOUT=300):
# a stop this quick gave its requests up, it did not wait for them to time out.
STOPPED_WITHIN: Final = 10.0
JOBS: Final = """jobs:
  - id: r1
    prompt: a fox
    model: veo3.1
    images: [https://img.example.com/a.jpg]
"""


def the_row(url: str) -> Any:
    engine = database.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(Job)).one()
    finally:
        engine.dispose()


def handed_back(row: Any, due_at: Any) -> bool:
    """Due again now, not at the end of its claim."""
    later = transitions.utcnow() + timedelta(seconds=30)
    return due_at is not None and due_at.replace(tzinfo=later.tzinfo) < later


@pytest.mark.parametrize("what", ["poll", "download"])
def test_sigterm_ends_a_run_at_once_while_the_relay_drips(
    mock: MockProvider, tmp_path: Path, what: str
) -> None:
    if what == "poll":
        mock.state.config.drip_polls = 0.1  # an answer of ~300 bytes: 30 s
    else:
        mock.state.config.drip_videos = 0.001  # 64 KiB: over a minute
    (tmp_path / "jobs.yaml").write_text(JOBS)
    url = f"sqlite:///{tmp_path / 'veo-batch.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VEO_")},
        "VEO_DATABASE_URL": url,
        "VEO_API_BASE": mock.url,
        "VEO_API_KEY": MOCK_KEY,
        "VEO_POLL_DELAY": "0.1",
        "VEO_POLL_INTERVAL": "0.1-0.5",
        "VEO_READ_TIMEOUT": "30",
        "VEO_DOWNLOAD_TIMEOUT": "300",
    }
    part = tmp_path / "videos" / "jobs" / "r1.mp4.part"
    with open(tmp_path / "stderr", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "veobatch", "run", "jobs.yaml", "--download", "videos"],
            env=env,
            cwd=tmp_path,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        if what == "poll":
            wait_until(lambda: mock.stats()["dripping"] == 1, 60, "a poll's answer to drip")
        else:
            wait_until(lambda: part.exists() and part.stat().st_size > 0, 60, "bytes to arrive")
        process.send_signal(signal.SIGTERM)  # as a container stops: the main process only
        assert process.wait(timeout=STOPPED_WITHIN) == ExitCode.INTERRUPTED
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    row = the_row(url)
    if what == "poll":
        assert (row.status, row.polls) == ("submitted", 0)
        assert handed_back(row, row.next_poll_at)
    else:
        assert (row.status, row.video_path, row.downloads) == ("succeeded", None, 0)
        assert handed_back(row, row.next_download_at)
        assert not part.exists()


@pytest.mark.parametrize("what", ["poll", "download"])
def test_sigterm_ends_a_worker_at_once_while_the_relay_drips(
    stack: Stack, tmp_path: Path, what: str
) -> None:
    if what == "poll":
        stack.mock.state.config.drip_polls = 0.1
    else:
        stack.mock.state.config.drip_videos = 0.001
    stack.load(["a fox"])
    worker = stack.start_worker(
        concurrency=1,
        VEO_READ_TIMEOUT="30",
        VEO_DOWNLOAD_TIMEOUT="300",
        VEO_DOWNLOAD_DIR=str(tmp_path),
    )
    stack.start_scheduler(downloads=what == "download")
    part = tmp_path / "b" / "r2.mp4.part"
    if what == "poll":
        wait_until(lambda: stack.mock.stats()["dripping"] == 1, 90, "a poll's answer to drip")
    else:
        wait_until(lambda: part.exists() and part.stat().st_size > 0, 90, "bytes to arrive")
    stack.stop.set()  # no scheduler to claim the row again once it is handed back
    assert stack.scheduler is not None
    stack.scheduler.join()
    os.kill(worker.pid, signal.SIGTERM)  # the main process, as a container stops
    worker.wait(timeout=STOPPED_WITHIN)
    row = stack.rows()[0]
    if what == "poll":
        assert (row.status, row.polls) == ("submitted", 0)
        assert handed_back(row, row.next_poll_at)
    else:
        assert (row.status, row.video_path, row.downloads) == ("succeeded", None, 0)
        assert handed_back(row, row.next_download_at)
        assert not part.exists()
