"""The figures of one polling run, from the mock's own counters (`GET /_mock/stats`, read once
the run is over) and from the rows at its end (the database for veo-batch, the poller's own
records for the baseline).

From the mock: tasks created (must equal the rows: nothing created twice, no prompt created
more than once) and polls (GET of a task); polls per finished task; every request to the API
(submits and polls; the mock counts no others here), against the least a perfect poller needs,
one submit and one poll per task (2 * created), as a ratio; `peak_running`, the most tasks
generating at once by the mock's clock (from creation to the end of generation), which is what
a provider's concurrency cap counts, against the cap.

From the rows: every row must end succeeded or failed (checked, like created == rows: a run
that misses a check makes bench/poll.py exit 1); polls per row as a histogram; the detection
lag of each row, `finished_at - submitted_at - task seconds` (both stamps are taken when an
answer is recorded, so the lag is how long a finished task waited for the poll that saw it,
plus a few milliseconds); the span from the first submission answered to the last task seen
finished, and the cap's use, the mean number of tasks generating over that span (created *
task seconds ÷ span) ÷ the cap. Wall time is compared with the lower bound of any poller under
the cap, `ceil(rows / cap) * task seconds` (waves of `cap` tasks, each as long as one task; the
least requests ÷ VEO_RATE is reported next to it).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import psycopg

from bench.polling.config import FINISHED, PG_BENCH_DSN, bounds


def quantile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


@dataclass
class RowRecord:
    """One row at the end of a run: its status, its polls, and when it was submitted and seen
    finished (seconds on any one clock; None when it never was)."""

    status: str
    polls: int
    submitted: float | None
    finished: float | None


def row_facts(records: Sequence[RowRecord], task_seconds: float) -> dict[str, Any]:
    """Statuses, polls per row, the detection lag and the span of a run's rows."""
    lags = [
        r.finished - r.submitted - task_seconds
        for r in records
        if r.finished is not None and r.submitted is not None
    ]
    submitted = [r.submitted for r in records if r.submitted is not None]
    finished = [r.finished for r in records if r.finished is not None]
    span = max(finished) - min(submitted) if submitted and finished else None
    return {
        "statuses": dict(Counter(r.status for r in records)),
        "polls": sum(r.polls for r in records),
        "polls_per_row": {str(k): v for k, v in sorted(Counter(r.polls for r in records).items())},
        "lag_seconds": {
            "median": statistics.median(lags) if lags else None,
            "p90": quantile(lags, 0.9),
            "max": max(lags, default=None),
        },
        "span_seconds": span,
    }


def _epoch(value: datetime | str | None) -> float | None:
    """A database timestamp as epoch seconds (SQLite keeps UTC as text without an offset)."""
    if value is None:
        return None
    stamp = datetime.fromisoformat(value) if isinstance(value, str) else value
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


ROWS_QUERY: Final = "SELECT status, polls, submitted_at, finished_at FROM jobs"


def sqlite_records(path: Path) -> list[RowRecord]:
    with closing(sqlite3.connect(path)) as conn:
        return [
            RowRecord(str(s), int(p), _epoch(a), _epoch(b))
            for s, p, a, b in conn.execute(ROWS_QUERY)
        ]


def pg_records() -> list[RowRecord]:
    with psycopg.connect(PG_BENCH_DSN) as conn:
        return [
            RowRecord(str(s), int(p), _epoch(a), _epoch(b))
            for s, p, a, b in conn.execute(ROWS_QUERY).fetchall()
        ]


def summarize(
    args: argparse.Namespace,
    tool: str,
    wall: float,
    stats: dict[str, Any],
    rows: dict[str, Any],
    cpu: float,
) -> dict[str, Any]:
    """The figures of one run, and what is wrong with it."""
    created = stats["created"]
    finished = sum(rows["statuses"].get(s, 0) for s in FINISHED)
    least = 2 * created
    found = bounds(args)
    span = rows["span_seconds"]
    result: dict[str, Any] = {
        "tool": tool,
        "rows": args.rows,
        "cap": args.cap,
        "task_seconds": args.task_seconds,
        "wall_seconds": wall,
        "mock": stats,
        "finished": finished,
        "polls_per_finished_task": stats["polls"] / finished if finished else None,
        "requests": stats["requests"],
        "least_requests": least,
        "requests_over_least": stats["requests"] / least if least else None,
        "peak_running": stats["peak_running"],
        "peak_over_cap": stats["peak_running"] / args.cap,
        "bound_seconds": found["waves_seconds"],
        "wall_over_bound": wall / found["waves_seconds"] if found["waves_seconds"] else None,
        "cap_use": created * args.task_seconds / span / args.cap if span else None,
        "cpu_seconds": cpu,
        **rows,
    }
    wrong = []
    if created != args.rows:
        wrong.append(f"the mock created {created:,} tasks for {args.rows:,} rows")
    if stats["prompts_created_twice"]:
        wrong.append(f"{stats['prompts_created_twice']:,} rows were created twice")
    if finished != args.rows:
        wrong.append(
            f"{args.rows - finished:,} rows did not end succeeded or failed: {rows['statuses']}"
        )
    result["wrong"] = wrong
    notes = []
    if stats["peak_running"] > args.cap:
        notes.append(
            f"the mock saw {stats['peak_running']:,} tasks generating at once, "
            f"over the cap of {args.cap:,}"
        )
    if rows["polls"] != stats["polls"]:
        notes.append(
            f"the mock answered {stats['polls']:,} polls, the rows record {rows['polls']:,}"
        )
    if stats["rejected_429"]:
        notes.append(f"{stats['rejected_429']:,} requests were answered 429")
    result["notes"] = notes
    return result
