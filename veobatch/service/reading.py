"""Reading: batches, their rows and each row's story, exports, progress, activity, estimates."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from shlex import quote
from typing import Any

from veobatch.errors import (
    ImageError,
    NotFoundError,
)
from veobatch.images.sending import checked_bytes
from veobatch.lifecycle import transitions
from veobatch.lifecycle.progress import Progress, follow
from veobatch.lifecycle.spend_rules import Estimate
from veobatch.lifecycle.video_files import is_video_path_of
from veobatch.service.base import ServiceBase
from veobatch.states import OPEN, BatchState, JobStatus
from veobatch.store import activity
from veobatch.store.activity import Histogram, Series
from veobatch.store.export import (
    ExportText,
)
from veobatch.store.queries import (
    BatchSummary,
    RowFilter,
    attempts_of,
    batch_id,
    batch_summaries,
    count_jobs,
    model_counts,
    page_of,
    stream_jobs,
)
from veobatch.store.tables import Job
from veobatch.views import history_view, job_view


@dataclass(frozen=True)
class Activity:
    """What a batch has been doing (the dashboard's batch page)."""

    batch: BatchSummary  # its state, counts and money (without `error_kinds`)
    per_minute: int  # rows that ended in the last minute
    eta_seconds: float | None  # at that pace, until no row is left open
    reasons: list[tuple[str, str, int]]  # the top (error kind, error, rows)
    series: Series  # rows sent and finished over time
    generation: Histogram  # rows by seconds from submission to video


class Reading(ServiceBase):
    def batches(self) -> list[BatchSummary]:
        """Every batch, oldest first, with its counts per status."""
        with self.engine.connect() as conn:
            return batch_summaries(conn)

    def jobs(
        self,
        batch: str,
        *,
        statuses: Sequence[str] = (),
        kinds: Sequence[str] = (),
        refs: Sequence[str] = (),
        reviews: Sequence[str] = (),
        models: Sequence[str] = (),
        text: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """A page of the batch's rows (in the order they were added), as plain dicts;
        `limit=0` is every row from `offset` on. Filters as `store.queries.RowFilter`."""
        chosen = RowFilter(statuses, kinds, refs, reviews, models, text)
        with self.engine.connect() as conn:
            query = chosen.query(batch_id(conn, batch))
            page = page_of(query, limit, offset) if limit else query.offset(offset)
            return [job_view(row, self.settings.prices) for row in stream_jobs(conn, page)]

    def count(
        self,
        batch: str,
        *,
        statuses: Sequence[str] = (),
        kinds: Sequence[str] = (),
        refs: Sequence[str] = (),
        reviews: Sequence[str] = (),
        models: Sequence[str] = (),
        text: str | None = None,
    ) -> int:
        """How many rows `jobs` pages through."""
        chosen = RowFilter(statuses, kinds, refs, reviews, models, text)
        with self.engine.connect() as conn:
            return count_jobs(conn, chosen.query(batch_id(conn, batch)))

    def video_file(self, batch: str, ref: str) -> Path | None:
        """The row's downloaded video where it was saved (by `run --download DIR` or a worker
        on this machine): a file inside VEO_DOWNLOAD_DIR, or one at the very place a download
        of this row is written (DIR/BATCH/ID.mp4). A path in the row that points anywhere else
        is never served; None also when the file is gone."""
        folder = self.settings.download_dir
        with self.engine.connect() as conn:
            found = conn.execute(
                RowFilter(refs=[ref]).query(batch_id(conn, batch)).with_only_columns(Job.video_path)
            ).scalar()
        if not found:
            return None
        path = Path(found).resolve()
        ours = is_video_path_of(path, batch, ref) and is_video_path_of(Path(found), batch, ref)
        inside = folder is not None and path.is_relative_to(Path(folder).resolve())
        return path if (ours or inside) and path.is_file() else None

    def image_entry(self, batch: str, ref: str, index: int) -> Any:
        """Entry `index` of the row's stored `images` (NotFoundError past the end)."""
        with self.engine.connect() as conn:
            images = conn.execute(
                RowFilter(refs=[ref]).query(batch_id(conn, batch)).with_only_columns(Job.images)
            ).scalar()
        if images is None:
            raise NotFoundError(f"no row {ref!r} in batch {batch!r}")
        if not 0 <= index < len(images):
            raise NotFoundError(f"row {ref!r} has {len(images)} image(s)")
        return images[index]

    def image_bytes(self, batch: str, ref: str, index: int) -> bytes:
        """The bytes of the row's image `index`: a data: URI decoded, or a local file if it is
        still the one loaded (a link has none here: follow it)."""
        entry = self.image_entry(batch, ref, index)
        if isinstance(entry, str) and entry.startswith("data:"):
            try:
                return base64.b64decode(entry.partition(",")[2], validate=False)
            except (binascii.Error, ValueError):
                raise NotFoundError(f"image {index} of row {ref!r} is not base64") from None
        if not isinstance(entry, dict):
            raise NotFoundError(f"image {index} of row {ref!r} is a link, not stored here")
        try:
            return checked_bytes(entry)
        except ImageError as exc:
            raise NotFoundError(exc.message) from None

    def job(self, batch: str, ref: str) -> dict[str, Any]:
        """One row with its whole history (each submission, poll and download)."""
        with self.engine.connect() as conn:
            query = RowFilter(refs=[ref]).query(batch_id(conn, batch))
            row = conn.execute(query).first()
            if row is None:
                raise NotFoundError(
                    f"batch {batch!r} has no job {ref!r}; `veo-batch jobs {quote(batch)}` lists "
                    "them"
                )
            view = job_view(row, self.settings.prices)
            view["history"] = [history_view(attempt) for _, attempt in attempts_of(conn, query)]
        return view

    def iter_jobs(self, batch: str) -> Iterator[dict[str, Any]]:
        """Every row of the batch, streamed."""
        with self.engine.connect() as conn:
            query = RowFilter().query(batch_id(conn, batch))
            for row in stream_jobs(conn, query):
                yield job_view(row, self.settings.prices)

    def export(
        self, batch: str, format: str, *, statuses: Sequence[str] = (), kinds: Sequence[str] = ()
    ) -> ExportText:
        """The batch as CSV or JSON Lines text, read as it is iterated: each row's input
        fields (loadable again) and its outcome. An unknown batch raises at once."""
        with self.engine.connect() as conn:
            bid = batch_id(conn, batch)
        rows = RowFilter(statuses, kinds).query(bid)
        return ExportText(self.engine, rows, format, self.settings.prices)

    def watch(
        self,
        batch: str,
        *,
        every: float = 1.0,
        wait_for_videos: bool = True,
        downloading: bool | None = None,
        wait_for_downloads: bool = False,
    ) -> Iterator[Progress]:
        """The batch's progress now, then every `every` seconds, until nothing is left to do
        for it (with `wait_for_downloads`, every video on disk or given up) or it stops being
        active (paused, cancelled)."""
        with self.engine.connect() as conn:
            bid = batch_id(conn, batch)
        if downloading is None:
            downloading = self.settings.download_dir is not None
        return follow(
            self.engine,
            bid,
            every=every,
            wait_for_videos=wait_for_videos,
            downloading=downloading,
            wait_for_downloads=wait_for_downloads,
        )

    def activity(self, batch: str, *, charts: bool = True) -> Activity:
        """The batch with how fast its rows end, why they fail, when they were sent and
        finished, and how long their videos took: aggregate queries, never the rows
        themselves. Without `charts`, only the counts and the pace (what a page polls every
        few seconds)."""
        now = transitions.utcnow()
        reasons, series, generation = None, None, None
        with self.engine.connect() as conn:
            summary = batch_summaries(conn, batch)[0]
            ended = activity.finished_since(conn, [summary.id], now - timedelta(minutes=1))
            if charts:
                reasons = activity.failure_reasons(conn, summary.id)
                series = activity.series(conn, summary.id, now)
                generation = activity.generation_times(conn, summary.id)
        return _paced(summary, ended.get(summary.id, 0), reasons, series, generation)

    def overview(self) -> list[Activity]:
        """Every batch (oldest first) with its counts, money and pace: the dashboard's first
        page. Only batches still at work (active or paused) have their pace counted."""
        since = transitions.utcnow() - timedelta(minutes=1)
        with self.engine.connect() as conn:
            summaries = batch_summaries(conn)
            working = [s.id for s in summaries if s.state in (BatchState.ACTIVE, BatchState.PAUSED)]
            ended = activity.finished_since(conn, working, since)
        return [_paced(summary, ended.get(summary.id, 0)) for summary in summaries]

    def estimate(self, batch: str) -> Estimate:
        """What the rows of `batch` not sent yet will cost, per model, what it has spent, and
        the requests left (submissions plus the polls expected)."""
        summary = self.status(batch, errors=False)
        with self.engine.connect() as conn:
            counts = model_counts(
                conn, summary.id, RowFilter([JobStatus.PENDING, JobStatus.QUEUED])
            )
        return self.estimate_rows(
            counts, spent=summary.spent, committed=summary.committed, budget=summary.budget
        )


def _paced(
    summary: BatchSummary,
    per_minute: int,
    reasons: list[tuple[str, str, int]] | None = None,
    series: activity.Series | None = None,
    generation: activity.Histogram | None = None,
) -> Activity:
    """A batch's activity, with its ETA at the pace of the last minute."""
    waiting = sum(summary.counts.get(status, 0) for status in OPEN)
    eta = waiting / per_minute * 60 if per_minute and waiting else None
    return Activity(
        summary,
        per_minute,
        eta,
        reasons or [],
        series or activity.Series(None, 60, [], []),
        generation or activity.Histogram(0, 15, []),
    )
