"""A `run` stopped (Ctrl-C, SIGTERM) once nothing is left for it ends as a normal end would:
its batch finished, its results written. One stopped with work left says how to go on (see
test_cli's stop test)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY, serving
from tests.helpers import FAST, ROOT, load_prompts, wait_until
from veobatch.embedded_runner import EmbeddedRunner
from veobatch.engine.rate_limit import LocalRateLimiter
from veobatch.engine.spend_rules import Spending
from veobatch.images.sending import ImageSender
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockProvider
from veobatch.settings import Secret, Settings
from veobatch.store.tables import Batch, Job

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


def test_a_stop_while_the_runner_ends_still_finishes_its_batch(
    engine: Engine, mock: MockProvider
) -> None:
    """The stop (a real SIGINT) comes while the runner waits for its threads to end, after
    every row succeeded: the batch is finished all the same, and the stop goes on up."""
    batch = load_prompts(engine, ["a", "b"])
    with ProviderClient(mock.url, Secret(MOCK_KEY), read_timeout=1.0) as client:
        runner = EmbeddedRunner(
            engine,
            client,
            LocalRateLimiter(0.0),
            batch,
            pacing=FAST,
            images=ImageSender(Settings().image_mode),
            spending=Spending(),
            tick=3.0,  # each idle thread takes up to this long to see the run end
            lease=timedelta(seconds=30),
            poll_claim=timedelta(minutes=2),
            concurrency=2,
        )

        def stop_while_ending() -> None:
            wait_until(lambda: runner.stopping, 120, "the run to end")
            os.kill(os.getpid(), signal.SIGINT)

        stopper = threading.Thread(target=stop_while_ending)
        stopper.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                runner.run()
        finally:
            stopper.join()
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(Job.status)).scalars()) == {"succeeded"}
        assert conn.execute(sa.select(Batch.state)).scalar_one() == "finished"
