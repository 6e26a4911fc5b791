"""Downloads: handed out when due (claimed like polls), recorded, handed back, retried."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.lifecycle.transitions.polls import claim_due
from veobatch.states import JobStatus
from veobatch.store.tables import Attempt, Job

# ---------------------------------------------------------------------------------- downloads


def due_downloads(
    conn: Connection,
    now: datetime,
    limit: int,
    claim: timedelta,
    batch_ids: Sequence[int] | None = None,
) -> list[int]:
    """Up to `limit` succeeded rows whose video is due to be downloaded; claimed like polls."""
    return claim_due(conn, Job.next_download_at, JobStatus.SUCCEEDED, now, limit, claim, batch_ids)


def downloaded(
    conn: Connection,
    job_id: int,
    now: datetime,
    *,
    path: str | None = None,
    size: int | None = None,
    sha256: str | None = None,
    error: str | None = None,
    retry_in: float | None = None,
) -> None:
    """A download's outcome: the file, or an error and when to try again (None: give up).
    The row's status is not touched: a video that cannot be fetched is still made."""
    if error is None:
        values: dict[str, Any] = {
            "video_path": path,
            "video_bytes": size,
            "video_sha256": sha256,
            "download_error": None,
            "next_download_at": None,
        }
    else:
        retry_at = now + timedelta(seconds=retry_in) if retry_in is not None else None
        values = {"download_error": error, "next_download_at": retry_at}
    conn.execute(
        sa.update(Job)
        .where(Job.id == job_id)
        .values(downloads=Job.downloads + 1, updated_at=now, **values)
    )
    conn.execute(sa.insert(Attempt).values(job_id=job_id, action="download", at=now, error=error))


def hand_back_download(conn: Connection, job_id: int, now: datetime) -> int:
    """A download given up unfinished (the process is stopping) is due again at once; no
    try is counted."""
    return conn.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.SUCCEEDED, Job.video_path.is_(None))
        .values(next_download_at=now, updated_at=now)
    ).rowcount


def retry_downloads(conn: Connection, batch_id: int, now: datetime) -> int:
    """Succeeded rows of the batch whose download gave up are due again (a new run asks)."""
    return conn.execute(
        sa.update(Job)
        .where(
            Job.batch_id == batch_id,
            Job.status == JobStatus.SUCCEEDED,
            Job.video_path.is_(None),
            Job.video_url.is_not(None),
            Job.next_download_at.is_(None),
        )
        .values(next_download_at=now, downloads=0, updated_at=now)
    ).rowcount
