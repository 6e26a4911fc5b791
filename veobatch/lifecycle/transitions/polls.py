"""Polls: handed out when due (claimed for a while, so a lost one is only late), handed
back, and each answer recorded."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.accounts.spec import DEFAULT
from veobatch.lifecycle import spending
from veobatch.lifecycle.poll_rules import PollOutcome
from veobatch.lifecycle.transitions.batches import pause
from veobatch.lifecycle.transitions.recording import history
from veobatch.lifecycle.transitions.reviews import sent_again
from veobatch.states import JobStatus
from veobatch.store.tables import Job

# ---------------------------------------------------------------------------------- polls


def due_polls(
    conn: Connection,
    now: datetime,
    limit: int,
    claim: timedelta,
    batch_ids: Sequence[int] | None = None,
    accounts: Collection[str] | None = None,
) -> list[int]:
    """Up to `limit` submitted rows whose next poll is due, longest waiting first; their
    next poll moves `claim` ahead, so the next round does not send them again. A poll that
    is lost (a worker killed, a message gone) is simply due again then. With `accounts`,
    only the tasks those accounts made (a task is asked about only where it was made)."""
    return claim_due(
        conn, Job.next_poll_at, JobStatus.SUBMITTED, now, limit, claim, batch_ids, accounts
    )


def claim_due(
    conn: Connection,
    due_at: sa.orm.InstrumentedAttribute[datetime | None],
    status: JobStatus,
    now: datetime,
    limit: int,
    claim: timedelta,
    batch_ids: Sequence[int] | None,
    accounts: Collection[str] | None = None,
) -> list[int]:
    """Rows in `status` whose `due_at` has come, oldest first; `due_at` moves `claim` ahead."""
    if limit <= 0:
        return []
    due = (
        sa.select(Job.id)
        .where(due_at <= now, Job.status == status)
        .order_by(due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if batch_ids is not None:
        due = due.where(Job.batch_id.in_(list(batch_ids)))
    if accounts is not None:  # (a row with none was sent before accounts: the default's)
        mine = Job.account.in_(list(accounts))
        due = due.where(sa.or_(mine, Job.account.is_(None)) if DEFAULT in accounts else mine)
    ids = list(conn.execute(due).scalars())
    if not ids:
        return []
    claimed = conn.execute(
        sa.update(Job)
        .where(Job.id.in_(ids), Job.status == status, due_at <= now)
        .values({due_at: now + claim})
        .returning(Job.id)
    )
    return sorted(claimed.scalars())


def hand_back_polls(conn: Connection, job_ids: Sequence[int], now: datetime) -> int:
    """Polls claimed and never made (the process is stopping) are due again at once."""
    if not job_ids:
        return 0
    return conn.execute(
        sa.update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == JobStatus.SUBMITTED)
        .values(next_poll_at=now)
    ).rowcount


def polled(conn: Connection, job: sa.Row[Any], outcome: PollOutcome, now: datetime) -> bool:
    """One poll's outcome (and a history row if it changed something), in the caller's
    transaction; False if the row was no longer `submitted` (rerun, cancelled meanwhile). A
    filtered video not billed gives its price back; a filtered row with a new try goes back
    to `pending` with what changes (`Fallback`), its history saying so."""
    if outcome.fallback is not None:
        return _tried_again(conn, job, outcome, now)
    values: dict[str, Any] = {
        "status": outcome.status,
        "remote_status": outcome.remote_status,
        "progress": outcome.progress,
        "error": outcome.error,
        "error_kind": outcome.error_kind,
        "polls": Job.polls + 1,
        "next_poll_at": outcome.next_poll_at,
        "updated_at": now,
    }
    if outcome.http_status is not None:
        values["http_status"] = outcome.http_status
    if outcome.finished:
        values["finished_at"] = now
    if outcome.video_url is not None:
        values.update(video_url=outcome.video_url, next_download_at=now)
    changed = conn.execute(
        sa.update(Job).where(Job.id == job.id, Job.status == JobStatus.SUBMITTED).values(**values)
    ).rowcount
    if changed and (outcome.changed or outcome.finished or outcome.error):
        history(conn, job.id, "poll", now, job.task_id, outcome, outcome.remote_status, job.account)
    if changed and outcome.refund:
        spending.refund(conn, job, outcome.refund)
    if outcome.pause_reason is not None:
        pause(conn, job.batch_id, outcome.pause_reason, now)
    return bool(changed)


def _tried_again(conn: Connection, job: sa.Row[Any], outcome: PollOutcome, now: datetime) -> bool:
    """A filtered row back to `pending` for its one new try (see `polled`)."""
    assert outcome.fallback is not None
    values: dict[str, Any] = {
        **sent_again(now),
        "error": outcome.error,
        "error_kind": outcome.error_kind,
        "polls": Job.polls + 1,
        outcome.fallback.field: outcome.fallback.value,
    }
    changed = conn.execute(
        sa.update(Job).where(Job.id == job.id, Job.status == JobStatus.SUBMITTED).values(**values)
    ).rowcount
    if changed:
        history(conn, job.id, "poll", now, job.task_id, outcome, outcome.remote_status, job.account)
        if outcome.refund:
            spending.refund(conn, job, outcome.refund)
    return bool(changed)
