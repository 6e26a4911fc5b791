"""What a batch has been doing, for the dashboard: how fast rows finish, why they fail, when
they were sent and finished, how long generations take. Each is one aggregate query over the
batch's rows (by the batch index), never a load of the rows themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.states import JobStatus
from veobatch.store.queries import utc
from veobatch.store.tables import Job

MAX_BUCKETS: Final = 48
MAX_BARS: Final = 30
# The widths a generation time's bucket may have, in seconds: 15 s (as counted) and rounder.
DURATIONS: Final = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
FINISHED: Final = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.IN_DOUBT)


@dataclass(frozen=True)
class Series:
    """Counts per time bucket: `start` is the first bucket's start, each `width` seconds."""

    start: datetime | None
    width: int
    sent: list[int]
    finished: list[int]


@dataclass(frozen=True)
class Histogram:
    """Rows per bucket of `width` seconds, the first from `start` seconds, one after the other
    (an empty bucket is a 0)."""

    start: int
    width: int
    counts: list[int]


def _epoch(conn: Connection, column: Any) -> Any:
    """Seconds since 1970 of a timestamp column, in this database's dialect."""
    if conn.dialect.name == "postgresql":
        return sa.func.extract("epoch", column)
    return sa.cast(sa.func.strftime("%s", column), sa.Integer)


def _bucket(conn: Connection, seconds: Any, width: int) -> Any:
    """`floor(seconds / width)`: SQLite divides integers as integers; PostgreSQL's epoch is a
    number with a fraction, so it is floored (a cast would round)."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.floor(seconds / width), sa.Integer)
    return sa.cast(seconds, sa.Integer) / width


def finished_since(conn: Connection, batches: Sequence[int], since: datetime) -> dict[int, int]:
    """Rows of each batch that ended (with a video, a failure, or in doubt) since `since`."""
    if not batches:
        return {}
    query = (
        sa.select(Job.batch_id, sa.func.count())
        .where(Job.batch_id.in_(list(batches)), Job.status.in_(FINISHED), Job.finished_at >= since)
        .group_by(Job.batch_id)
    )
    return {bid: int(n) for bid, n in conn.execute(query)}


def failure_reasons(conn: Connection, batch: int, limit: int = 8) -> list[tuple[str, str, int]]:
    """The most frequent (error kind, error, rows) of the batch's failed and in-doubt rows."""
    text = sa.func.substr(Job.error, 1, 160)
    query = (
        sa.select(Job.error_kind, text, sa.func.count())
        .where(Job.batch_id == batch, Job.status.in_([JobStatus.FAILED, JobStatus.IN_DOUBT]))
        .group_by(Job.error_kind, text)
        .order_by(sa.func.count().desc())
        .limit(limit)
    )
    return [(kind or "", error or "", int(n)) for kind, error, n in conn.execute(query)]


def series(conn: Connection, batch: int, now: datetime) -> Series:
    """Rows sent and rows finished per bucket, from the first submission to `now` (UTC), in
    at most MAX_BUCKETS buckets of a round width."""
    first = utc(
        conn.execute(sa.select(sa.func.min(Job.submitted_at)).where(Job.batch_id == batch)).scalar()
    )
    if first is None:
        return Series(None, 60, [], [])
    span = max((now - first).total_seconds(), 1.0)
    width = next(
        (w for w in (10, 30, 60, 300, 900, 3600, 21600, 86400) if span / w <= MAX_BUCKETS),
        86400 * 7,
    )
    start_epoch = int(first.timestamp()) // width * width
    count = min(MAX_BUCKETS, int((now.timestamp() - start_epoch) // width) + 1)

    def per_bucket(column: Any, statuses: Sequence[str] | None) -> list[int]:
        bucket = _bucket(conn, _epoch(conn, column) - start_epoch, width)
        query = sa.select(bucket, sa.func.count()).where(Job.batch_id == batch, column.is_not(None))
        if statuses is not None:
            query = query.where(Job.status.in_(list(statuses)))
        values = [0] * count
        for index, n in conn.execute(query.group_by(bucket)):
            if index is not None and 0 <= int(index) < count:
                values[int(index)] += int(n)
        return values

    return Series(
        datetime.fromtimestamp(start_epoch, UTC),
        width,
        per_bucket(Job.submitted_at, None),
        per_bucket(Job.finished_at, FINISHED),
    )


def generation_times(conn: Connection, batch: int, bars: int = MAX_BARS) -> Histogram:
    """Rows that got their video, by seconds from submission to video: counted in buckets of
    15 s, then merged into at most `bars` buckets of a round width, none left out between the
    fastest and the slowest."""
    base = 15
    taken = _epoch(conn, Job.finished_at) - _epoch(conn, Job.submitted_at)
    bucket = _bucket(conn, taken, base)
    query = (
        sa.select(bucket, sa.func.count())
        .where(Job.batch_id == batch, Job.status == JobStatus.SUCCEEDED)
        .group_by(bucket)
    )
    found = [(int(b) * base, int(n)) for b, n in conn.execute(query) if b is not None]
    if not found:
        return Histogram(0, base, [])
    low = min(seconds for seconds, _ in found)
    high = max(seconds for seconds, _ in found)
    width = next(
        (w for w in DURATIONS if high // w - low // w < bars),
        math.ceil((high - low) / (bars - 1) / 86400) * 86400,  # over a month: whole days
    )
    start = low // width * width
    counts = [0] * ((high - start) // width + 1)
    for seconds, n in found:
        counts[(seconds - start) // width] += n
    return Histogram(start, width, counts)
