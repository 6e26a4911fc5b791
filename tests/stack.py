"""A distributed deployment for tests: Celery worker processes, a scheduler (a thread here),
the mock provider over HTTP and one PostgreSQL database (the `stack` fixture, in conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import REDIS_URL
from tests.helpers import ROOT, load_prompts
from veobatch.provider.mock import MockProvider
from veobatch.scheduler.loop import Scheduler
from veobatch.settings import Settings
from veobatch.store.tables import Batch, Job
from veobatch.worker.app import make_app

KEY = "mock-key"


class Stack:
    """Workers (subprocesses), a scheduler (a thread here), the mock provider, one database."""

    def __init__(self, engine: Engine, url: str, mock: MockProvider) -> None:
        self.engine, self.url, self.mock = engine, url, mock
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stop = threading.Event()
        self.scheduler: threading.Thread | None = None

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "VEO_DATABASE_URL": self.url,
            "VEO_REDIS_URL": REDIS_URL,
            "VEO_API_BASE": self.mock.url,
            "VEO_API_KEY": KEY,
            "VEO_POLL_DELAY": "0.1",
            "VEO_POLL_INTERVAL": "0.1-0.5",
            **extra,
        }

    def start_worker(
        self,
        concurrency: int = 2,
        *,
        extra: Sequence[str] = (),
        stderr: Path | None = None,
        **env: str,
    ) -> subprocess.Popen[bytes]:
        """A `veo-batch worker` process (`extra`: more options; `stderr`: where it logs)."""
        with open(stderr or os.devnull, "wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "veobatch", "worker", "-c", str(concurrency), *extra],
                env=self.env(**env),
                cwd=ROOT,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.workers.append(worker)
        return worker

    def start_scheduler(self, grace: float = 1.0, **options: Any) -> None:
        settings = Settings.from_env(self.env())
        options.setdefault("poll_claim", timedelta(minutes=2))
        options.setdefault("submit_group", 8)  # a message names a group, as in production
        loop = Scheduler(
            self.engine,
            redis.Redis.from_url(REDIS_URL),
            make_app(settings),
            depth=20,
            tick=0.1,
            busy_tick=0.1,  # a thread of this process, beside the mock: no faster than that
            grace=timedelta(seconds=grace),
            poll_group=5,
            **options,
        )
        self.scheduler = threading.Thread(target=loop.run, args=(self.stop,), daemon=True)
        self.scheduler.start()

    def load(self, prompts: list[str], batch: str = "b") -> None:
        load_prompts(self.engine, prompts, batch)

    def batch_state(self) -> str:
        """The state of the batch, or "finished" once every batch is."""
        with self.engine.connect() as conn:
            states = set(conn.execute(sa.select(Batch.state)).scalars())
        return states.pop() if len(states) == 1 else "mixed"

    def rows(self) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(Job)))

    def statuses(self) -> dict[str, str]:
        with self.engine.connect() as conn:
            return {r.prompt: r.status for r in conn.execute(sa.select(Job.prompt, Job.status))}

    def close(self) -> None:
        self.stop.set()
        if self.scheduler is not None:
            self.scheduler.join()
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
