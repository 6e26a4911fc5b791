"""The embedded mode: one process takes a batch from rows to videos, with the same row life
as the distributed workers (release → claim → POST → record, then poll until the task ends,
then download) and the same limiter rule in process.

A dispatcher (the calling thread) hands work to threads only as fast as they take it, so
nothing waits in memory for long. New submissions go in groups to SUBMIT_LANES threads, each
working like a Celery worker process: a group claimed in one statement, its POSTs sent at once
(`concurrency` in flight across the lanes), its outcomes recorded in one transaction, so the
single SQLite writer sees two transactions a group, not two a row. Due polls have the request
threads (`concurrency` of them), downloads threads of their own (a slow video host never holds
up the API). Stopping (Ctrl-C) lets requests in flight
finish and be recorded and puts rows still queued back to pending: nothing stays
`submitting`, and running again resumes where this run stopped, polling what was submitted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from veobatch.engine import transitions
from veobatch.engine.download import download_one, video_client
from veobatch.engine.fanout import Fanout
from veobatch.engine.poll import poll_rows
from veobatch.engine.poll_rules import Pacing
from veobatch.engine.progress import Progress, snapshot
from veobatch.engine.rate_limit import RateLimiter
from veobatch.engine.spend_rules import Spending
from veobatch.engine.submit import submit_rows
from veobatch.engine.submit_rules import MAX_ATTEMPTS
from veobatch.images.sending import ImageSender
from veobatch.process import Process
from veobatch.provider.client import ProviderClient
from veobatch.states import BatchState

SNAPSHOT_EVERY = 0.5  # seconds between counts of the batch (a few GROUP BY queries)
DOWNLOAD_CLAIM = timedelta(minutes=15)
DOWNLOAD_THREADS = 2
SUBMIT_LANES = 2  # submit groups worked on at once: one records while the other sends
GROUPS_AHEAD = 8  # groups waiting per lane
LEASE_CHECK = 1.0  # seconds between looks for leases run out (a thread that died mid-request)


ProgressCallback = Callable[[Progress], None]


class EmbeddedRunner:
    def __init__(
        self,
        engine: Engine,
        client: ProviderClient,
        limiter: RateLimiter,
        batch_id: int,
        *,
        pacing: Pacing,
        lease: timedelta,
        poll_claim: timedelta,
        images: ImageSender,
        spending: Spending,
        poll_limiter: RateLimiter | None = None,
        concurrency: int = 4,
        tick: float = 0.2,
        max_attempts: int = MAX_ATTEMPTS,
        max_in_flight: int | None = None,
        wait_for_videos: bool = True,
        download_dir: Path | None = None,
        on_progress: ProgressCallback | None = None,
        videos: httpx.Client | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.limiter = limiter
        self.poll_limiter = poll_limiter or limiter
        self.batch_id = batch_id
        self.pacing = pacing
        self.concurrency = concurrency
        self.lease = lease
        self.images = images
        self.spending = spending
        self.tick = tick
        self.max_attempts = max_attempts
        self.max_in_flight = max_in_flight
        self.poll_claim = poll_claim  # a poll handed to a thread is not handed out again before
        self.wait_for_videos = wait_for_videos
        self.download_dir = download_dir if wait_for_videos else None
        self.on_progress = on_progress
        self._requests: queue.Queue[Callable[[], object]] = queue.Queue()
        self._submits: queue.Queue[Callable[[], object]] = queue.Queue()
        self._downloads: queue.Queue[Callable[[], object]] = queue.Queue()
        self.lanes = min(SUBMIT_LANES, concurrency)
        # Each lane sends its group's requests at once: `concurrency` in flight in all.
        self._fanouts = [
            Fanout(len(range(n, concurrency, self.lanes)), f"veo-batch-send-{n}")
            for n in range(self.lanes)
        ]
        self._thread_of = threading.local()
        self._leases_seen = 0.0
        self._stop = threading.Event()
        self._wakeup = threading.Event()
        self._db_lock = threading.Lock()  # one writer at a time, as SQLite wants
        self._busy = {"requests": 0, "submits": 0, "downloads": 0}  # items being worked on
        self._busy_lock = threading.Lock()
        self._claimed_polls: set[int] = set()  # polls handed to a thread, not made yet
        self._failures: list[BaseException] = []
        # One connection pool for every download of the run: the caller's, or one of our own.
        self._own_videos = videos is None
        self._videos = video_client() if videos is None else videos

    @classmethod
    def for_process(
        cls,
        held: Process,
        batch_id: int,
        *,
        concurrency: int,
        wait_for_videos: bool = True,
        download_dir: Path | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> EmbeddedRunner:
        """A runner with what `held` holds (built from the settings)."""
        return cls(
            held.engine,
            held.client,
            held.limiter,
            batch_id,
            pacing=held.pacing,
            lease=held.lease,
            poll_claim=held.poll_claim(4 * concurrency),
            images=held.images,
            spending=held.spending,
            poll_limiter=held.poll_limiter,
            concurrency=concurrency,
            max_in_flight=held.settings.max_in_flight,
            wait_for_videos=wait_for_videos,
            download_dir=download_dir,
            on_progress=on_progress,
            videos=held.videos,
        )

    def run(self) -> Progress:
        """Work until every row of the batch is finished (with `wait_for_videos`, else until
        each has a task), or the batch pauses, or Ctrl-C."""
        with self.engine.begin() as conn:  # rows a killed run left queued are ours again
            transitions.requeue(conn, transitions.utcnow(), batch_id=self.batch_id)
            # ... and rows it left submitting, once their lease is over, are in doubt: their
            # POST may have gone out. Nothing waits on a row no process holds.
            transitions.expire_leases(conn, transitions.utcnow(), self.batch_id)
            if self.download_dir is not None:
                transitions.retry_downloads(conn, self.batch_id, transitions.utcnow())
        progress = self._progress()
        progress.done_at_start = progress.done
        threads = [self._thread("requests", self._requests, n) for n in range(self.concurrency)]
        threads += [self._thread("submits", self._submits, n) for n in range(self.lanes)]
        if self.download_dir is not None:
            threads += [
                self._thread("downloads", self._downloads, n) for n in range(DOWNLOAD_THREADS)
            ]
        for thread in threads:
            thread.start()
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
                self._wakeup.wait(self.tick)  # a thread wakes us when its queue runs low
                self._wakeup.clear()
        finally:
            self._stop.set()
            for thread in threads:
                thread.join()
            for fanout in self._fanouts:
                fanout.close()
            if self._own_videos:
                self._videos.close()
            with self.engine.begin() as conn:
                transitions.requeue(conn, transitions.utcnow(), batch_id=self.batch_id)
                with self._busy_lock:  # polls handed out and never made: due again now
                    unmade = list(self._claimed_polls)
                transitions.hand_back_polls(conn, unmade, transitions.utcnow())
                transitions.finish_batches(conn, transitions.utcnow())
        if self._failures:
            raise self._failures[0]
        return self._progress(progress)

    # ------------------------------------------------------------------ handing out work

    def _release(self, progress: Progress) -> None:
        """Hand due polls, new submissions (in groups) and due downloads to the threads,
        keeping a few ready for each."""
        with self._busy_lock:
            free = 4 * self.concurrency - self._busy["requests"] - self._requests.qsize()
            groups_free = (GROUPS_AHEAD + 1) * self.lanes - self._busy["submits"]
        groups_free -= self._submits.qsize()
        downloads_free = 2 * DOWNLOAD_THREADS - self._downloads.qsize()
        group = self._fanouts[0].size
        if groups_free < self.lanes * GROUPS_AHEAD // 2:  # top up in few, large releases
            groups_free = 0
        if free < self.concurrency and groups_free <= 0 and downloads_free <= 0:
            return
        now = transitions.utcnow()
        batch = [self.batch_id]
        with self._db_lock, self.engine.begin() as conn:
            if time.monotonic() >= self._leases_seen + LEASE_CHECK:
                transitions.expire_leases(conn, now, self.batch_id)
                self._leases_seen = time.monotonic()
            polls = []
            if free >= self.concurrency and self.wait_for_videos:  # --no-wait: no polls
                polls = transitions.due_polls(conn, now, free, self.poll_claim, batch)
            submits = []
            if groups_free > 0 and progress.state == BatchState.ACTIVE:
                submits = transitions.release(
                    conn, now, groups_free * group, batch, max_in_flight=self.max_in_flight
                )
            downloads = []
            if self.download_dir is not None and downloads_free > 0:
                downloads = transitions.due_downloads(
                    conn, now, downloads_free, DOWNLOAD_CLAIM, batch
                )
        with self._busy_lock:
            self._claimed_polls.update(polls)
        for job_id in polls:
            self._requests.put(partial(self._poll, [job_id]))
        for start in range(0, len(submits), group):
            self._submits.put(partial(self._submit, submits[start : start + group]))
        for job_id in downloads:
            self._downloads.put(partial(self._download, job_id))

    def _idle(self) -> bool:
        with self._busy_lock:
            busy = sum(self._busy.values())
            waiting = (self._requests, self._submits, self._downloads)
            return busy == 0 and all(work.empty() for work in waiting)

    def _finished(self, progress: Progress) -> bool:
        if not self._idle():
            return False
        if progress.state not in (BatchState.ACTIVE, BatchState.FINISHED):
            return True  # paused or cancelled: the next run goes on from here
        if progress.of(*progress.open_statuses):
            return False
        return self.download_dir is None or progress.downloads_due == 0

    # ------------------------------------------------------------------ the threads

    def _thread(
        self, kind: str, work: queue.Queue[Callable[[], object]], number: int
    ) -> threading.Thread:
        name = f"veo-batch-{kind}-{number}"
        return threading.Thread(
            target=self._work, args=(kind, work, number), name=name, daemon=True
        )

    def _work(self, kind: str, work: queue.Queue[Callable[[], object]], number: int) -> None:
        self._thread_of.number = number  # a submit lane's number names its fanout
        while not self._stop.is_set():
            try:
                item = work.get(timeout=self.tick)
            except queue.Empty:
                continue
            with self._busy_lock:
                self._busy[kind] += 1
            if work.qsize() < (GROUPS_AHEAD if kind == "submits" else 2 * self.concurrency):
                self._wakeup.set()
            try:
                item()
            except BaseException as exc:  # surfaced by run(); a claimed row's lease expires
                self._failures.append(exc)
            finally:
                with self._busy_lock:
                    self._busy[kind] -= 1

    def _submit(self, job_ids: list[int]) -> None:
        submit_rows(
            self.engine,
            self.client,
            self.limiter,
            job_ids,
            fanout=self._fanouts[self._thread_of.number],
            images=self.images,
            prices=self.spending,
            lease=self.lease,
            pacing=self.pacing,
            max_attempts=self.max_attempts,
            wait=self._wait_for_slot,
            write_lock=self._db_lock,
        )

    def _poll(self, job_ids: list[int]) -> None:
        outcomes = poll_rows(
            self.engine,
            self.client,
            self.poll_limiter,
            job_ids,
            pacing=self.pacing,
            wait=self._wait_for_slot,
            write_lock=self._db_lock,
        )
        if len(outcomes) == len(job_ids):  # else stopped first: handed back at the end
            with self._busy_lock:
                self._claimed_polls.difference_update(job_ids)

    def _download(self, job_id: int) -> None:
        assert self.download_dir is not None
        download_one(self.engine, self._videos, job_id, self.download_dir, write_lock=self._db_lock)

    def _wait_for_slot(self, seconds: float) -> bool:
        """Wait for a rate slot; False (send nothing) if the run is stopping meanwhile."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()

    def _progress(self, previous: Progress | None = None) -> Progress:
        progress = snapshot(self.engine, self.batch_id, previous)
        progress.waits_for_videos = self.wait_for_videos
        progress.downloading = self.download_dir is not None
        return progress
