"""A batch's progress while it runs: counts per status, the provider's progress, videos on
disk, rate and ETA; read from the store, never from events, so any process can show it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch.lifecycle.poll_rules import percent_of
from veobatch.states import OPEN, UNSENT, BatchState, JobStatus
from veobatch.store.queries import status_counts
from veobatch.store.tables import Batch, Job


@dataclass
class Progress:
    """A batch's counts per status while it runs, and how fast rows are getting done."""

    counts: dict[str, int] = field(default_factory=dict)
    state: str = BatchState.ACTIVE
    pause_reason: str | None = None
    started: float = field(default_factory=time.monotonic)
    done_at_start: int | None = None
    waits_for_videos: bool = True  # False: a row is done once it has a task (`--no-wait`)
    generating: dict[str | None, int] = field(default_factory=dict)  # submitted rows by progress
    downloading: bool = False  # videos are being fetched (shown)
    waits_for_downloads: bool = False  # ... and the run waits for them (`run --download`)
    downloaded: int = 0
    downloads_due: int = 0  # succeeded rows whose video is still to be fetched
    download_errors: int = 0  # of which the last try failed

    def of(self, *statuses: JobStatus) -> int:
        return sum(self.counts.get(s, 0) for s in statuses)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def open_statuses(self) -> tuple[JobStatus, ...]:
        return OPEN if self.waits_for_videos else UNSENT

    @property
    def done(self) -> int:
        """Rows that need nothing more from this run."""
        return self.total - self.of(*self.open_statuses)

    @property
    def downloads_left(self) -> int:
        """Videos still to be fetched that the run waits for (tries left: not given up)."""
        return self.downloads_due if self.waits_for_downloads else 0

    @property
    def over(self) -> bool:
        """Nothing is left to wait for: every row is done (and, when the run waits for them,
        every video is on disk or given up), or the batch is paused or cancelled."""
        if self.state not in (BatchState.ACTIVE, BatchState.FINISHED):
            return True
        return not self.of(*self.open_statuses) and not self.downloads_left

    @property
    def rate(self) -> float:
        """Rows done per second in this run."""
        elapsed = time.monotonic() - self.started
        return (self.done - (self.done_at_start or 0)) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        left = self.total - self.done
        return left / self.rate if self.rate > 0 else None

    @property
    def average_progress(self) -> float | None:
        """The provider's mean progress over the rows generating (rows it said nothing of: 0)."""
        rows = sum(self.generating.values())
        if not rows:
            return None
        return sum((percent_of(p) or 0.0) * n for p, n in self.generating.items()) / rows


def snapshot(engine: Engine, batch_id: int, previous: Progress | None = None) -> Progress:
    """The batch's state and counts now (keeping the start of the run from `previous`)."""
    of_batch = Job.batch_id == batch_id
    with engine.connect() as conn:
        batch = conn.execute(
            sa.select(Batch.state, Batch.pause_reason).where(Batch.id == batch_id)
        ).one()
        counts = status_counts(conn, [batch_id])[batch_id]
        generating: dict[str | None, int] = {}
        if counts.get(JobStatus.SUBMITTED):
            generating = dict(
                conn.execute(
                    sa.select(Job.progress, sa.func.count())
                    .where(of_batch, Job.status == JobStatus.SUBMITTED)
                    .group_by(Job.progress)
                ).all()
            )
        files = conn.execute(
            sa.select(
                sa.func.count(Job.video_path),
                sa.func.count(Job.next_download_at),
                sa.func.count(sa.case((Job.next_download_at.is_not(None), Job.download_error))),
            ).where(of_batch, Job.status == JobStatus.SUCCEEDED)
        ).one()
    progress = Progress(
        counts=counts,
        state=batch.state,
        pause_reason=batch.pause_reason,
        generating=generating,
        downloaded=files[0],
        downloads_due=files[1],
        download_errors=files[2],
    )
    if previous is not None:
        progress.started, progress.done_at_start = previous.started, previous.done_at_start
        progress.waits_for_videos = previous.waits_for_videos
        progress.downloading = previous.downloading
        progress.waits_for_downloads = previous.waits_for_downloads
    return progress


def follow(
    engine: Engine,
    batch_id: int,
    *,
    every: float,
    wait_for_videos: bool = True,
    downloading: bool = False,
    wait_for_downloads: bool = False,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[Progress]:
    """The batch's progress now, then every `every` seconds, until nothing is left to wait
    for (the last one yielded is `over`); with `wait_for_downloads`, that includes the
    videos of its succeeded rows (fetched by the workers)."""
    progress = snapshot(engine, batch_id)
    progress.waits_for_videos = wait_for_videos
    progress.downloading = downloading or wait_for_downloads or progress.downloaded > 0
    progress.waits_for_downloads = wait_for_downloads and wait_for_videos
    progress.done_at_start = progress.done
    yield progress
    while not progress.over:
        sleep(every)
        progress = snapshot(engine, batch_id, progress)
        yield progress
