"""What people ask of rows: a review of their videos, and a rerun that sends them again."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.states import JobStatus
from veobatch.store.queries import RowFilter, sent_as_new
from veobatch.store.tables import Job


def set_review(
    conn: Connection,
    batch_id: int,
    refs: Sequence[str],
    verdict: str | None,
    now: datetime,
) -> int:
    """The verdict on the videos of rows `refs` of the batch (None: not reviewed)."""
    return conn.execute(
        sa.update(Job)
        .where(Job.batch_id == batch_id, Job.ref.in_(list(refs)))
        .values(review=verdict, reviewed_at=now if verdict else None)
    ).rowcount


def sent_again(now: datetime) -> dict[str, Any]:
    """The values that make a row `pending`, to be sent as a new task: a fresh count of
    attempts, nothing of its last task kept (the attempts table keeps its history)."""
    return {
        "status": JobStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": None,
        "task_id": None,
        "remote_status": None,
        "progress": None,
        "video_url": None,
        "polls": 0,
        "next_poll_at": None,
        "poll_until": None,
        "video_path": None,
        "video_bytes": None,
        "video_sha256": None,
        "downloads": 0,
        "download_error": None,
        "next_download_at": None,
        "finished_at": None,
        "review": None,  # a new video: not reviewed yet
        "reviewed_at": None,
        "updated_at": now,
    }


def rerun(
    conn: Connection,
    batch_id: int,
    now: datetime,
    rows: RowFilter,
    *,
    deadline: timedelta,
) -> tuple[int, int]:
    """Matching rows go again; (rows to send again, rows to poll again).

    A row that timed out still has its task: it is polled again, with a new `deadline`. Any
    other row goes back to `pending` with a fresh count of attempts and is sent as a new task
    (the attempts table keeps the old one's history).
    """
    chosen = rows.where(batch_id)
    sent = conn.execute(
        sa.update(Job).where(chosen, sent_as_new()).values(**sent_again(now))
    ).rowcount
    polled = conn.execute(
        sa.update(Job)
        .where(chosen, sa.not_(sent_as_new()))
        .values(
            status=JobStatus.SUBMITTED,
            error=None,
            error_kind=None,
            next_poll_at=now,
            poll_until=now + deadline,
            finished_at=None,
            updated_at=now,
        )
    ).rowcount
    return sent, polled
