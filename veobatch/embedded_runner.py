"""The embedded mode: one command takes a batch from rows to videos, with the same row life
as the distributed workers (release → claim → POST → record, then poll until the task ends,
then download) and the same limiter rule on the machine.

New submissions go through submit lanes, each working like a Celery worker process: it
releases a wave of pending rows, claims them in one statement, sends their POSTs at once (its
share of `concurrency`) and records their outcomes in one transaction (`submit_rows`). On Linux,
with a database file or server, from a process with no other thread (the command line, not a
host application), each lane is a process forked at the start (one per CPU: a
process has one interpreter lock, and a lane is mostly Python between its requests); they share
the rate limiter (in shared memory) and take turns writing (one lock, as SQLite wants one
writer). Elsewhere (an in-memory database, no fork) the lanes are threads of this process.

This process keeps the rest: a dispatcher hands due polls to request threads (`concurrency`
of them) and due downloads to threads of their own (a slow video host never holds up the API),
looks for leases run out, and counts the batch for the progress shown. Stopping (Ctrl-C) lets
submissions in flight finish and be recorded (each within its whole deadline), gives up polls
and downloads in flight at once (handed back, due again; a download's `.part` removed) and puts
rows still queued back to pending: nothing stays `submitting`, and running again resumes where
this run stopped, polling what was submitted. The stop takes at most `stop_grace` seconds (a
submission's deadline plus STOP_SLACK): a submit lane still busy then is killed, and its rows
left `submitting` become `in_doubt` when their lease runs out.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
from sqlalchemy.engine import Engine

from veobatch.concurrency import worker_processes
from veobatch.destinations import Destinations
from veobatch.errors import DatabaseError, ProcessFailed
from veobatch.lifecycle import transitions
from veobatch.lifecycle.download import (
    DOWNLOAD_TIMEOUT,
    MAX_BYTES,
    abandon,
    download_one,
    video_client,
)
from veobatch.lifecycle.due import Rules, Wanted, due_work
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.poll import poll_rows
from veobatch.lifecycle.progress import Progress, snapshot
from veobatch.lifecycle.sender import Sender
from veobatch.lifecycle.submit import submit_rows
from veobatch.process import Process
from veobatch.settings import STOP_SLACK
from veobatch.store import database

SNAPSHOT_EVERY = 0.5  # seconds between counts of the batch (a few GROUP BY queries)
DOWNLOAD_THREADS = 2
LOCK_TIMEOUT = 60.0  # seconds a write may wait for the lock before the run gives up
LEASE_CHECK = 1.0  # seconds between looks for leases run out (a thread that died mid-request)


ProgressCallback = Callable[[Progress], None]


class EmbeddedRunner:
    def __init__(
        self,
        engine: Engine,
        sender: Sender,
        batch_id: int,
        *,
        poll_claim: timedelta,
        concurrency: int = 4,
        tick: float = 0.2,
        max_in_flight: int | None = None,
        wait_for_videos: bool = True,
        download_dir: Path | None = None,
        on_progress: ProgressCallback | None = None,
        videos: httpx.Client | None = None,
        download_timeout: float = DOWNLOAD_TIMEOUT,
        video_max_bytes: int = MAX_BYTES,
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.batch_id = batch_id
        self.concurrency = concurrency
        self.tick = tick
        # A poll handed to a thread is not handed out again before `poll_claim` (`lifecycle.due`).
        self.rules = Rules(poll_claim, max_in_flight, accounts=frozenset(sender.names))
        self.wait_for_videos = wait_for_videos
        self.download_dir = download_dir if wait_for_videos else None
        self.on_progress = on_progress
        self._requests: queue.Queue[Callable[[], object]] = queue.Queue()
        self._downloads: queue.Queue[Callable[[], object]] = queue.Queue()
        self.lanes = min(worker_processes(), concurrency)
        # Each lane sends its wave's requests at once: `concurrency` in flight in all.
        self._fanouts = [
            Fanout(len(range(n, concurrency, self.lanes)), f"veo-batch-send-{n}")
            for n in range(self.lanes)
        ]
        self._forks = _can_fork(engine)
        if self._forks:  # what the lane processes share with this one
            context = multiprocessing.get_context("fork")
            self._stop: _Stop = context.Event()
            self._db_lock = _WriteLock(context.Lock())
            self._lane_errors: multiprocessing.SimpleQueue[BaseException] = context.SimpleQueue()
            self._wakeup: _Stop = context.Event()  # set by a thread or a lane: look now
        else:
            self._stop = threading.Event()
            self._db_lock = _WriteLock(threading.Lock())
            self._wakeup = threading.Event()
        self._lane_hosts: list[multiprocessing.process.BaseProcess | threading.Thread] = []
        self._leases_seen = 0.0
        self._busy = {"requests": 0, "downloads": 0}  # items being worked on
        self._busy_lock = threading.Lock()
        self._claimed_polls: set[int] = set()  # polls handed to a thread, not made yet
        self._failures: list[BaseException] = []
        # One connection pool for every download of the run: the caller's, or one of our own.
        self._own_videos = videos is None
        # (Without a client of the caller's: videos from the relay's own origin, or public.)
        trusted = Destinations.of(sender.bases, False, "VEO_DOWNLOAD_ALLOW_PRIVATE")
        keyed = sender.download_headers
        self._videos = video_client(trusted, keyed) if videos is None else videos
        self.download_timeout = download_timeout
        self.video_max_bytes = video_max_bytes
        self.stop_grace = sender.deadline + STOP_SLACK

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
            held.sender,
            batch_id,
            poll_claim=held.poll_claim(4 * concurrency),
            concurrency=concurrency,
            max_in_flight=held.settings.max_in_flight,
            wait_for_videos=wait_for_videos,
            download_dir=download_dir,
            on_progress=on_progress,
            videos=held.videos,
            download_timeout=held.settings.download_timeout,
            video_max_bytes=int(held.settings.video_max_mb * 1024 * 1024),
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
        self._start_lanes()  # before any thread of ours: a fork copies none of them
        threads = [self._thread("requests", self._requests, n) for n in range(self.concurrency)]
        if self.download_dir is not None:
            threads += [
                self._thread("downloads", self._downloads, n) for n in range(DOWNLOAD_THREADS)
            ]
        for thread in threads:
            thread.start()
        try:
            seen = 0.0
            while not self._lanes_failed():
                self._release()
                if self._idle() or time.monotonic() - seen >= SNAPSHOT_EVERY:
                    progress, seen = self._progress(progress), time.monotonic()
                    if self.on_progress is not None:
                        self.on_progress(progress)
                    if self._finished(progress):
                        break
                self._wakeup.wait(self.tick)  # a thread wakes us when its queue runs low
                self._wakeup.clear()
        except BaseException:  # stopped (Ctrl-C, SIGTERM): polls and downloads in flight
            self._stop.set()  # are given up at once, asked again later
            self.sender.abandon()
            abandon(self._videos)
            raise
        finally:
            try:
                self._stop.set()
                self._stop_hosts(threads)
            finally:  # even when a stop (Ctrl-C) comes while they end: every change is
                self._settle()  # conditional, so a thread still ending cannot be undone
        if self._failures:
            raise self._failures[0]
        return self._progress(progress)

    def _end_all(self, hosts: list[multiprocessing.process.BaseProcess | threading.Thread]) -> None:
        """Wait for the lanes and threads to end, `stop_grace` seconds in all; a lane process
        still at work then is killed (a thread is left: it ends with this process)."""
        ends = time.monotonic() + self.stop_grace
        for host in hosts:
            host.join(max(ends - time.monotonic(), 0.0))
            if host.is_alive() and isinstance(host, multiprocessing.process.BaseProcess):
                host.kill()
                host.join()

    def _stop_hosts(self, threads: list[threading.Thread]) -> None:
        """The lanes and threads ended (within `stop_grace`), and what they used closed."""
        self._end_all([*self._lane_hosts, *threads])
        self._lanes_failed()  # what a lane said as it stopped
        for fanout in self._fanouts:
            fanout.close()
        if self._own_videos:
            self._videos.close()

    def _settle(self) -> None:
        """What the run leaves: rows it queued back to pending, polls it handed out and never
        made due again, and its batch finished if nothing is left to send or follow."""
        with self.engine.begin() as conn:
            transitions.requeue(conn, transitions.utcnow(), batch_id=self.batch_id)
            with self._busy_lock:  # polls handed out and never made: due again now
                unmade = list(self._claimed_polls)
            transitions.hand_back_polls(conn, unmade, transitions.utcnow())
            transitions.finish_batches(conn, transitions.utcnow())

    # ------------------------------------------------------------------ submit lanes

    def _start_lanes(self) -> None:
        """One submit lane per fanout: forked processes where they can share the database,
        else threads."""
        self._lanes_idle = multiprocessing.RawArray("b", self.lanes)  # set by a lane with no work
        if not self._forks:
            self._lane_hosts = [
                threading.Thread(
                    target=self._lane_thread, args=(n,), name=f"veo-batch-lane-{n}", daemon=True
                )
                for n in range(self.lanes)
            ]
        else:
            context = multiprocessing.get_context("fork")
            sys.stdout.flush()  # (what is buffered would be written again by each child)
            sys.stderr.flush()
            self._lane_hosts = [
                context.Process(
                    target=self._lane_process,
                    args=(n, os.getpid()),
                    name=f"veo-batch-lane-{n}",
                    daemon=True,  # ended with this process, should it end without stopping them
                )
                for n in range(self.lanes)
            ]
        for host in self._lane_hosts:
            host.start()

    def _lane(self, number: int, parent: int | None = None) -> None:
        """Release a wave of pending rows and submit it, until the run stops (or, in a forked
        lane, its `parent` is gone)."""
        fanout = self._fanouts[number]
        batch = [self.batch_id]
        while not self._stop.is_set() and (parent is None or os.getppid() == parent):
            with self._db_lock, self.engine.begin() as conn:
                wave = Wanted(submits=fanout.size)
                job_ids = due_work(conn, transitions.utcnow(), wave, self.rules, batch).submits
            if not job_ids and not self._lanes_idle[number]:
                self._lanes_idle[number] = True
                self._wakeup.set()  # the run may be over
            self._lanes_idle[number] = not job_ids
            if not job_ids:
                self._stop.wait(self.tick)  # backoffs, max_in_flight, a paused batch, the end
                continue
            submit_rows(
                self.engine,
                self.sender,
                job_ids,
                fanout=fanout,
                wait=self._wait_for_slot,
                write_lock=self._db_lock,
            )

    def _lane_thread(self, number: int) -> None:
        try:
            self._lane(number)
        except BaseException as exc:  # surfaced by run(); a claimed row's lease expires
            self._failures.append(exc)
            self._wakeup.set()

    def _lane_process(self, number: int, parent: int) -> None:
        """A forked lane: its own connections (the inherited ones are the parent's), the
        parent's signals left to the parent (it stops the lanes), and a failure sent back."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - locks of our own: another
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - thread may have held the old
        self.engine.dispose(close=False)
        try:
            self._lane(number, parent)
        except BaseException as exc:
            self._lane_errors.put(_portable(exc))
            sys.exit(1)
        finally:
            self._fanouts[number].close()
            self.sender.close()  # (its clients: its own, opened here)

    def _lanes_failed(self) -> bool:
        """Whether a lane failed: its error (or its end) is then in `_failures`."""
        if self._forks:
            while not self._lane_errors.empty():
                self._failures.append(self._lane_errors.get())
            if not self._failures and not self._stop.is_set():
                for host in self._lane_hosts:
                    code = getattr(host, "exitcode", None)
                    if code is not None:
                        self._failures.append(
                            ProcessFailed(f"submit lane {host.name} ended (exit code {code})")
                        )
        return bool(self._failures)

    # ------------------------------------------------------------------ handing out work

    def _release(self) -> None:
        """Hand due polls and due downloads to the threads, keeping a few ready for each."""
        with self._busy_lock:
            free = 4 * self.concurrency - self._busy["requests"] - self._requests.qsize()
        downloads_free = 2 * DOWNLOAD_THREADS - self._downloads.qsize()
        polling = free >= self.concurrency and self.wait_for_videos  # --no-wait: no polls
        downloading = self.download_dir is not None and downloads_free > 0
        looking = time.monotonic() >= self._leases_seen + LEASE_CHECK
        if not (polling or downloading or looking):
            return
        wanted = Wanted(
            polls=free if polling else 0,
            downloads=downloads_free if downloading else 0,
            expire=looking,
        )
        with self._db_lock, self.engine.begin() as conn:
            due = due_work(conn, transitions.utcnow(), wanted, self.rules, [self.batch_id])
        if looking:
            self._leases_seen = time.monotonic()
        with self._busy_lock:
            self._claimed_polls.update(due.polls)
        for job_id in due.polls:
            self._requests.put(partial(self._poll, [job_id]))
        for job_id in due.downloads:
            self._downloads.put(partial(self._download, job_id))

    def _idle(self) -> bool:
        with self._busy_lock:
            busy = sum(self._busy.values())
            waiting = (self._requests, self._downloads)
            threads_idle = busy == 0 and all(work.empty() for work in waiting)
        return threads_idle and all(self._lanes_idle)

    def _finished(self, progress: Progress) -> bool:
        return self._idle() and progress.over  # paused or cancelled: the next run goes on

    # ------------------------------------------------------------------ the threads

    def _thread(
        self, kind: str, work: queue.Queue[Callable[[], object]], number: int
    ) -> threading.Thread:
        name = f"veo-batch-{kind}-{number}"
        return threading.Thread(target=self._work, args=(kind, work), name=name, daemon=True)

    def _work(self, kind: str, work: queue.Queue[Callable[[], object]]) -> None:
        while not self._stop.is_set():
            try:
                item = work.get(timeout=self.tick)
            except queue.Empty:
                continue
            with self._busy_lock:
                self._busy[kind] += 1
            if work.qsize() < 2 * self.concurrency:
                self._wakeup.set()
            try:
                item()
            except BaseException as exc:  # surfaced by run(); a claimed row's lease expires
                self._failures.append(exc)
            finally:
                with self._busy_lock:
                    self._busy[kind] -= 1

    def _poll(self, job_ids: list[int]) -> None:
        outcomes = poll_rows(
            self.engine,
            self.sender,
            job_ids,
            wait=self._wait_for_slot,
            write_lock=self._db_lock,
        )
        if len(outcomes) == len(job_ids):  # else stopped first: handed back at the end
            with self._busy_lock:
                self._claimed_polls.difference_update(job_ids)

    def _download(self, job_id: int) -> None:
        assert self.download_dir is not None
        download_one(
            self.engine,
            self._videos,
            job_id,
            self.download_dir,
            write_lock=self._db_lock,
            deadline=self.download_timeout,
            max_bytes=self.video_max_bytes,
        )

    def _wait_for_slot(self, seconds: float) -> bool:
        """Wait for a rate slot; False (send nothing) if the run is stopping meanwhile."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()

    def _progress(self, previous: Progress | None = None) -> Progress:
        progress = snapshot(self.engine, self.batch_id, previous)
        progress.waits_for_videos = self.wait_for_videos
        progress.downloading = self.download_dir is not None
        progress.waits_for_downloads = progress.downloading
        return progress


class _Stop(Protocol):
    """An event: a threading.Event, or a multiprocessing one the lane processes share."""

    def is_set(self) -> bool: ...
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class _WriteLock:
    """The lock every write of the run takes (SQLite has one writer; without it, writers
    would queue in SQLite's busy handler, which sleeps milliseconds at a time). A lock a lane
    process died holding would stop every other write for good: waiting longer than
    LOCK_TIMEOUT is a DatabaseError instead."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise DatabaseError(
                f"the database stayed locked for {LOCK_TIMEOUT:.0f} s by this run's own "
                "processes (one of them died holding it?): stopping"
            )

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()


def _can_fork(engine: Engine) -> bool:
    """Whether submit lanes may be forked processes: on Linux (fork is its default there),
    from a process with no other thread (a fork copies the locks another thread holds, in
    libpq or OpenSSL say, and the child would wait on them for ever: a host application, a
    test, `run --mock` keep thread lanes), with a database other processes can open (a file
    or a server, not memory)."""
    in_memory = database.is_sqlite(engine.url) and database.sqlite_file(engine.url) is None
    alone = threading.active_count() == 1
    return sys.platform == "linux" and alone and not in_memory


def _portable(exc: BaseException) -> BaseException:
    """`exc` as it can cross to the parent process (pickled), else its words in one of ours."""
    try:
        copy: BaseException = pickle.loads(pickle.dumps(exc))  # our own child's, just made
    except Exception:  # any exception may fail to pickle, or to be made again
        return ProcessFailed(f"a submit lane failed: {type(exc).__name__}: {exc}")
    return copy
