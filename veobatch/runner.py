"""The embedded mode: one process submits a batch's rows, with the same row life as the
distributed workers (release → claim → POST → record) and the same limiter rule in process.

A dispatcher (the calling thread) releases rows only as fast as the worker threads take them,
so the queue never holds more than a few rows; worker threads run `submit_one`. Stopping
(Ctrl-C) lets requests in flight finish and be recorded, and puts rows still queued back to
pending: nothing stays `submitting`, and running again resumes where this run stopped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch import transitions
from veobatch.models import Batch, Job
from veobatch.provider import ProviderClient
from veobatch.ratelimit import RateLimiter
from veobatch.rowlife import MAX_ATTEMPTS
from veobatch.states import BatchState, JobStatus
from veobatch.submit import submit_one

SNAPSHOT_EVERY = 0.5  # seconds between counts of the batch (one GROUP BY query)


@dataclass
class Progress:
    """A batch's counts per status while it runs, and how fast rows are getting done."""

    counts: dict[str, int] = field(default_factory=dict)
    state: str = BatchState.ACTIVE
    pause_reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    done_at_start: int | None = None

    def of(self, *statuses: JobStatus) -> int:
        return sum(self.counts.get(s, 0) for s in statuses)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def done(self) -> int:
        """Rows that need nothing more from this run."""
        return self.total - self.of(*transitions.OPEN)

    @property
    def rate(self) -> float:
        """Rows done per second in this run."""
        elapsed = time.monotonic() - self.started
        return (self.done - (self.done_at_start or 0)) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 else None


ProgressCallback = Callable[[Progress], None]


class EmbeddedRunner:
    def __init__(
        self,
        engine: Engine,
        client: ProviderClient,
        limiter: RateLimiter,
        batch_id: int,
        *,
        concurrency: int = 4,
        lease: timedelta = timedelta(minutes=3),
        tick: float = 0.2,
        max_attempts: int = MAX_ATTEMPTS,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.limiter = limiter
        self.batch_id = batch_id
        self.concurrency = concurrency
        self.lease = lease
        self.tick = tick
        self.max_attempts = max_attempts
        self.on_progress = on_progress
        self._queue: queue.Queue[int] = queue.Queue()
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._db_lock = threading.Lock()  # one writer at a time, as SQLite wants
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._failures: list[BaseException] = []

    def run(self) -> Progress:
        """Submit until no row of the batch is left to send, or the batch pauses, or Ctrl-C."""
        with self.engine.begin() as conn:  # rows a killed run left queued are ours again
            transitions.requeue(conn, transitions.utcnow(), batch_id=self.batch_id)
        progress = self._progress()
        progress.done_at_start = progress.done
        workers = [
            threading.Thread(target=self._work, name=f"veo-batch-submit-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        for worker in workers:
            worker.start()
        try:
            seen = 0.0
            while not self._failures:
                self._release(progress)
                if self._idle() or time.monotonic() - seen >= SNAPSHOT_EVERY:
                    progress, seen = self._progress(progress), time.monotonic()
                    if self.on_progress is not None:
                        self.on_progress(progress)
                    if self._finished(progress):
                        break
                self._wakeup.wait(self.tick)  # a worker wakes us when the queue runs low
                self._wakeup.clear()
        finally:
            self._stop.set()
            for worker in workers:
                worker.join()
            with self.engine.begin() as conn:
                transitions.requeue(conn, transitions.utcnow(), batch_id=self.batch_id)
                transitions.finish_batches(conn, transitions.utcnow())
        if self._failures:
            raise self._failures[0]
        return self._progress(progress)

    def _release(self, progress: Progress) -> None:
        """Queue rows for the threads, keeping a few per thread ready."""
        with self._busy_lock:
            free = 4 * self.concurrency - self._busy - self._queue.qsize()
        if progress.state != BatchState.ACTIVE or free < self.concurrency:
            return
        with self._db_lock, self.engine.begin() as conn:
            ids = transitions.release(conn, transitions.utcnow(), free, [self.batch_id])
        for job_id in ids:
            self._queue.put(job_id)

    def _idle(self) -> bool:
        with self._busy_lock:
            return self._busy == 0 and self._queue.empty()

    def _finished(self, progress: Progress) -> bool:
        if not self._idle():
            return False
        if progress.state != BatchState.ACTIVE:
            return True  # paused or cancelled: nothing more will be sent
        return progress.of(*transitions.OPEN) == 0

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job_id = self._queue.get(timeout=self.tick)
            except queue.Empty:
                continue
            with self._busy_lock:
                self._busy += 1
            if self._queue.qsize() < 2 * self.concurrency:
                self._wakeup.set()
            try:
                submit_one(
                    self.engine, self.client, self.limiter, job_id, lease=self.lease,
                    max_attempts=self.max_attempts, wait=self._wait_for_slot,
                    write_lock=self._db_lock,
                )  # fmt: skip
            except BaseException as exc:  # surfaced by run(); the row's lease will expire
                self._failures.append(exc)
            finally:
                with self._busy_lock:
                    self._busy -= 1

    def _wait_for_slot(self, seconds: float) -> bool:
        """Wait for a rate slot; False (send nothing) if the run is stopping meanwhile."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()

    def _progress(self, previous: Progress | None = None) -> Progress:
        return snapshot(self.engine, self.batch_id, previous)


def snapshot(engine: Engine, batch_id: int, previous: Progress | None = None) -> Progress:
    """The batch's state and counts now (keeping the start of the run from `previous`)."""
    with engine.connect() as conn:
        batch = conn.execute(
            sa.select(Batch.state, Batch.pause_reason).where(Batch.id == batch_id)
        ).one()
        counts = dict(
            conn.execute(
                sa.select(Job.status, sa.func.count())
                .where(Job.batch_id == batch_id)
                .group_by(Job.status)
            ).all()
        )
    progress = Progress(counts=counts, state=batch.state, pause_reason=batch.pause_reason)
    if previous is not None:
        progress.started, progress.done_at_start = previous.started, previous.done_at_start
    return progress


def watch(
    engine: Engine,
    batch_id: int,
    *,
    tick: float = 1.0,
    on_progress: ProgressCallback | None = None,
) -> Progress:
    """Follow a batch that the distributed workers submit, until nothing is left to send or
    it stops being active (paused, cancelled)."""
    progress = snapshot(engine, batch_id)
    progress.done_at_start = progress.done
    while progress.state == BatchState.ACTIVE and progress.of(*transitions.OPEN):
        time.sleep(tick)
        progress = snapshot(engine, batch_id, progress)
        if on_progress is not None:
            on_progress(progress)
    return progress
