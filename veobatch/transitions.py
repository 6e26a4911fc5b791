"""The row state changes, each one conditional SQL statement (or one short transaction).

Every change names the state it expects (`WHERE status = 'queued'`), so a message delivered
twice, two schedulers, or a worker that comes back late change nothing they should not.
Times are UTC and come from the caller, which keeps these functions easy to test.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.models import Attempt, Batch, Job
from veobatch.rowlife import Outcome
from veobatch.states import BatchState, ErrorKind, JobStatus

OPEN = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.SUBMITTING)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _active_batches() -> sa.Select[Any]:
    return sa.select(Batch.id).where(Batch.state == BatchState.ACTIVE)


def release(
    conn: Connection, now: datetime, limit: int, batch_ids: Sequence[int] | None = None
) -> list[int]:
    """Up to `limit` pending rows of active batches whose backoff is over, oldest batch first,
    become `queued`; their ids. Rows locked by another scheduler are skipped (PostgreSQL)."""
    if limit <= 0:
        return []
    ready = (
        sa.select(Job.id)
        .where(
            Job.status == JobStatus.PENDING,
            Job.batch_id.in_(_active_batches()),
            sa.or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now),
        )
        .order_by(Job.batch_id, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if batch_ids is not None:
        ready = ready.where(Job.batch_id.in_(list(batch_ids)))
    ids = [row.id for row in conn.execute(ready)]
    if not ids:
        return []
    queued = conn.execute(
        sa.update(Job)
        .where(Job.id.in_(ids), Job.status == JobStatus.PENDING)
        .values(status=JobStatus.QUEUED, updated_at=now)
        .returning(Job.id)
    )
    return sorted(row.id for row in queued)


def claim(conn: Connection, job_id: int, now: datetime, lease: timedelta) -> sa.Row[Any] | None:
    """queued → submitting with a lease, committed before the POST; None if another worker
    has it, or it is no longer queued."""
    return conn.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.SUBMITTING, lease_until=now + lease, updated_at=now)
        .returning(*Job.__table__.c)
    ).first()


def batch_state(conn: Connection, batch_id: int) -> str | None:
    return conn.execute(sa.select(Batch.state).where(Batch.id == batch_id)).scalar()


def unclaim(conn: Connection, job_id: int, now: datetime) -> None:
    """A claimed row whose batch is no longer active goes back to pending, untouched."""
    conn.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.SUBMITTING)
        .values(status=JobStatus.PENDING, lease_until=None, updated_at=now)
    )


def record(conn: Connection, job: sa.Row[Any], outcome: Outcome, now: datetime) -> bool:
    """The outcome of one attempt and its history row, in the caller's transaction.

    A task_id is recorded even if the row's lease ran out meanwhile (it is a fact about a
    task that exists); any other outcome only applies to a row still `submitting`. False if
    the row had moved on.
    """
    expected = [JobStatus.SUBMITTING]
    if outcome.status is JobStatus.SUBMITTED:
        expected.append(JobStatus.IN_DOUBT)
    finished = outcome.status in (JobStatus.FAILED, JobStatus.IN_DOUBT)
    values: dict[str, Any] = {
        "status": outcome.status,
        "error": outcome.error,
        "error_kind": outcome.error_kind,
        "http_status": outcome.http_status,
        "lease_until": None,
        "updated_at": now,
        "next_attempt_at": now + timedelta(seconds=outcome.retry_in) if outcome.retry_in else None,
        "attempts": Job.attempts + (1 if outcome.counts_as_attempt else 0),
    }
    if outcome.task_id is not None:
        values.update(task_id=outcome.task_id, submitted_at=now)
    if finished:
        values["finished_at"] = now
    changed = conn.execute(
        sa.update(Job).where(Job.id == job.id, Job.status.in_(expected)).values(**values)
    ).rowcount
    conn.execute(
        sa.insert(Attempt).values(
            job_id=job.id,
            action="submit",
            at=now,
            http_status=outcome.http_status,
            task_id=outcome.task_id,
            error=outcome.error,
            error_kind=outcome.error_kind,
        )
    )
    if outcome.pause_reason is not None:
        pause(conn, job.batch_id, outcome.pause_reason, now)
    return bool(changed)


def pause(conn: Connection, batch_id: int, reason: str, now: datetime) -> bool:
    return bool(
        conn.execute(
            sa.update(Batch)
            .where(Batch.id == batch_id, Batch.state == BatchState.ACTIVE)
            .values(state=BatchState.PAUSED, pause_reason=reason, updated_at=now)
        ).rowcount
    )


def resume(conn: Connection, batch_id: int, now: datetime) -> bool:
    return bool(
        conn.execute(
            sa.update(Batch)
            .where(Batch.id == batch_id, Batch.state.in_([BatchState.PAUSED, BatchState.FINISHED]))
            .values(state=BatchState.ACTIVE, pause_reason=None, updated_at=now)
        ).rowcount
    )


def reopen(conn: Connection, batch_id: int, now: datetime) -> str | None:
    """A finished batch with rows to send again becomes active; its state afterwards."""
    conn.execute(
        sa.update(Batch)
        .where(Batch.id == batch_id, Batch.state == BatchState.FINISHED)
        .values(state=BatchState.ACTIVE, updated_at=now)
    )
    return batch_state(conn, batch_id)


def cancel(conn: Connection, batch_id: int, now: datetime) -> int:
    """The batch is cancelled; its rows not yet sent become `cancelled`. Rows in flight finish."""
    conn.execute(
        sa.update(Batch)
        .where(Batch.id == batch_id)
        .values(state=BatchState.CANCELLED, updated_at=now)
    )
    return conn.execute(
        sa.update(Job)
        .where(Job.batch_id == batch_id, Job.status.in_([JobStatus.PENDING, JobStatus.QUEUED]))
        .values(status=JobStatus.CANCELLED, finished_at=now, updated_at=now)
    ).rowcount


def requeue(
    conn: Connection,
    now: datetime,
    older_than: timedelta | None = None,
    batch_id: int | None = None,
    limit: int | None = None,
) -> int:
    """queued rows (of a stopped run, or whose message was lost) back to pending, oldest
    first, at most `limit`."""
    rows = sa.select(Job.id).where(Job.status == JobStatus.QUEUED)
    if batch_id is not None:
        rows = rows.where(Job.batch_id == batch_id)
    if older_than is not None:
        rows = rows.where(Job.updated_at < now - older_than)
    if limit is not None:
        rows = rows.order_by(Job.updated_at, Job.id).limit(limit)
    query = sa.update(Job).where(Job.id.in_(rows.scalar_subquery()), Job.status == JobStatus.QUEUED)
    return conn.execute(query.values(status=JobStatus.PENDING, updated_at=now)).rowcount


def expire_leases(conn: Connection, now: datetime) -> int:
    """submitting rows whose worker died mid-request: a task may exist, so `in_doubt`."""
    return conn.execute(
        sa.update(Job)
        .where(Job.status == JobStatus.SUBMITTING, Job.lease_until < now)
        .values(
            status=JobStatus.IN_DOUBT,
            error_kind=ErrorKind.AMBIGUOUS,
            error="the worker stopped during the request (lease expired); the provider may "
            "have created (and billed) a task: not resent",
            lease_until=None,
            finished_at=now,
            updated_at=now,
        )
    ).rowcount


def finish_batches(conn: Connection, now: datetime) -> int:
    """Active batches with no row left to send become `finished`."""
    open_rows = sa.select(Job.id).where(Job.batch_id == Batch.id, Job.status.in_(OPEN))
    return conn.execute(
        sa.update(Batch)
        .where(Batch.state == BatchState.ACTIVE, ~sa.exists(open_rows))
        .values(state=BatchState.FINISHED, updated_at=now)
    ).rowcount


def rerun(
    conn: Connection,
    batch_id: int,
    now: datetime,
    statuses: Sequence[str],
    kinds: Sequence[str] = (),
) -> int:
    """Matching rows back to `pending` with a fresh count of attempts (the attempts table
    keeps their history)."""
    query = sa.update(Job).where(Job.batch_id == batch_id, Job.status.in_(list(statuses)))
    if kinds:
        query = query.where(Job.error_kind.in_(list(kinds)))
    return conn.execute(
        query.values(
            status=JobStatus.PENDING,
            attempts=0,
            next_attempt_at=None,
            finished_at=None,
            updated_at=now,
        )
    ).rowcount
