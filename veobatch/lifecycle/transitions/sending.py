"""A row on its way to the provider: released, claimed with a lease, held, handed back;
and the rows a dead sender or a lost message left behind (in doubt, pending again)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.lifecycle import spending
from veobatch.states import IN_FLIGHT, BatchState, ErrorKind, JobStatus
from veobatch.store.tables import Batch, Job


def utcnow() -> datetime:
    return datetime.now(UTC)


def release(
    conn: Connection,
    now: datetime,
    limit: int,
    batch_ids: Sequence[int] | None = None,
    *,
    max_in_flight: int | None = None,
) -> list[int]:
    """Up to `limit` pending rows of active batches whose backoff is over become `queued`;
    their ids, one batch's after another's in turn. Rows locked by another scheduler are
    skipped (PostgreSQL).

    Active batches share `limit` evenly (what one leaves unused goes to the others), so a
    10-row batch queued by another system is not stuck behind a 100,000-row file. With
    `max_in_flight`, never more than that many rows queued, submitting or submitted
    (generating) at once: of all batches, or of `batch_ids` when given.
    """
    if max_in_flight is not None:
        flying = sa.select(sa.func.count()).where(Job.status.in_(IN_FLIGHT))
        if batch_ids is not None:
            flying = flying.where(Job.batch_id.in_(list(batch_ids)))
        limit = min(limit, max_in_flight - int(conn.execute(flying).scalar_one()))
    if limit <= 0:
        return []
    if batch_ids is not None and len(batch_ids) == 1:  # the embedded runner's lanes
        released = conn.execute(
            _RELEASE_ONE, {"batch": batch_ids[0], "limit": limit, "now": now}
        ).scalars()
        return sorted(released)
    ready = sa.and_(
        Job.status == JobStatus.PENDING,
        sa.or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= now),
    )
    batches = sa.select(Batch.id).where(Batch.state == BatchState.ACTIVE).order_by(Batch.id)
    if batch_ids is not None:
        batches = batches.where(Batch.id.in_(list(batch_ids)))
    waiting = [
        bid
        for bid in conn.execute(batches).scalars()
        if conn.execute(sa.select(Job.id).where(Job.batch_id == bid, ready).limit(1)).first()
    ]
    taken: dict[int, list[int]] = {bid: [] for bid in waiting}
    count = 0
    while waiting and count < limit:  # a round: each batch its share of what is left
        share = max((limit - count) // len(waiting), 1)
        for bid in list(waiting):
            room = min(share, limit - count)
            if room <= 0:
                break
            rows = (
                sa.select(Job.id)
                .where(Job.batch_id == bid, ready)
                .order_by(Job.id)
                .limit(room)
                .with_for_update(skip_locked=True)
            )
            if taken[bid]:
                rows = rows.where(Job.id > taken[bid][-1])
            got = list(conn.execute(rows).scalars())
            taken[bid] += got
            count += len(got)
            if len(got) < room:
                waiting.remove(bid)  # it has no more: the others share its part
    # Interleaved, one row of each batch in turn: the order the messages go out in.
    order = [i for column in zip_longest(*taken.values()) for i in column if i is not None]
    if not order:
        return []
    queued = set(
        conn.execute(
            sa.update(Job)
            .where(Job.id.in_(order), Job.status == JobStatus.PENDING)
            .values(status=JobStatus.QUEUED, updated_at=now)
            .returning(Job.id)
        ).scalars()
    )
    return [i for i in order if i in queued]


# One batch's next rows to queued, in one statement (built once: a lane releases a wave at a
# time). PostgreSQL skips the rows another transaction has locked, as the general path does.
_NOW: Final = sa.bindparam("now", type_=Job.updated_at.type)
_RELEASE_ONE: Final = (
    sa.update(Job)
    .where(
        Job.id.in_(
            sa.select(Job.id)
            .where(
                Job.batch_id == sa.bindparam("batch"),
                Job.status == JobStatus.PENDING,
                sa.or_(Job.next_attempt_at.is_(None), Job.next_attempt_at <= _NOW),
            )
            .order_by(Job.id)
            .limit(sa.bindparam("limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        ),
        Job.status == JobStatus.PENDING,
        sa.exists().where(Batch.id == sa.bindparam("batch"), Batch.state == BatchState.ACTIVE),
    )
    .values(status=JobStatus.QUEUED, updated_at=_NOW)
    .returning(Job.id)
)


def claim(conn: Connection, job_id: int, now: datetime, lease: timedelta) -> sa.Row[Any] | None:
    """`claim_rows` of one row: the row, or None."""
    claimed = claim_rows(conn, [job_id], now, lease)
    return claimed[0] if claimed else None


def claim_rows(
    conn: Connection, job_ids: Sequence[int], now: datetime, lease: timedelta
) -> list[sa.Row[Any]]:
    """queued → submitting with a lease, in one conditional statement, committed before any
    POST: the rows claimed, in the order of `job_ids`. A row another worker has, or no longer
    queued, is not; a queued row whose batch is no longer active (paused) goes back to
    pending, untouched."""
    ids = list(job_ids)
    claimed = conn.execute(_CLAIM, {"ids": ids, "until": now + lease, "now": now}).all()
    if len(claimed) < len(ids):
        conn.execute(_BACK_TO_PENDING, {"ids": ids, "now": now})
    order = {job_id: n for n, job_id in enumerate(ids)}
    return sorted(claimed, key=lambda job: order[job.id])


# The statements of every claim, built once (they are the hot path of a submission).
_IDS: Final[sa.BindParameter[list[int]]] = sa.bindparam("ids", expanding=True)
_CLAIM: Final = (
    sa.update(Job)
    .where(
        Job.id.in_(_IDS),
        Job.status == JobStatus.QUEUED,
        Job.batch_id.in_(sa.select(Batch.id).where(Batch.state == BatchState.ACTIVE)),
    )
    .values(
        status=JobStatus.SUBMITTING,
        lease_until=sa.bindparam("until", type_=Job.lease_until.type),
        updated_at=sa.bindparam("now", type_=Job.updated_at.type),
    )
    .returning(*Job.__table__.c)
)
_BACK_TO_PENDING: Final = (
    sa.update(Job)
    .where(Job.id.in_(_IDS), Job.status == JobStatus.QUEUED)
    .values(
        status=JobStatus.PENDING,
        lease_until=None,
        updated_at=sa.bindparam("now", type_=Job.updated_at.type),
    )
)


def hold(conn: Connection, job_ids: Sequence[int], now: datetime, lease: timedelta) -> None:
    """Queued rows a worker has taken (their message) and will claim wave by wave get a lease
    while they wait: if the worker dies first, `expire_leases` sends them back to pending
    (they were never sent) without waiting for the message to come back."""
    conn.execute(_HOLD, {"ids": list(job_ids), "until": now + lease})


_HOLD: Final = (
    sa.update(Job)
    .where(Job.id.in_(_IDS), Job.status == JobStatus.QUEUED)
    .values(lease_until=sa.bindparam("until", type_=Job.lease_until.type))
)


def extend_leases(conn: Connection, job_ids: Sequence[int], until: datetime) -> set[int]:
    """Move the lease of rows being submitted to `until`; the ids of those still
    `submitting` (not cancelled, nor taken as lost)."""
    moved = conn.execute(
        sa.update(Job)
        .where(Job.id.in_(list(job_ids)), Job.status == JobStatus.SUBMITTING)
        .values(lease_until=until)
        .returning(Job.id)
    )
    return set(moved.scalars())


def has_tasks(conn: Connection, batch_id: int) -> bool:
    """Whether any row of the batch has (had) a task at the provider."""
    found = sa.select(Job.id).where(Job.batch_id == batch_id, Job.task_id.is_not(None)).limit(1)
    return conn.execute(found).first() is not None


def batch_state(conn: Connection, batch_id: int) -> str | None:
    return conn.execute(sa.select(Batch.state).where(Batch.id == batch_id)).scalar()


def unclaim(
    conn: Connection, job_ids: Sequence[int], now: datetime, retry_at: datetime | None = None
) -> None:
    """Claimed rows not sent (their price did not fit, the process is stopping, a 429 of
    their group, no account has room) go back to pending, untouched but for `retry_at`, when
    they may be released again (None: at once); the prices their claims held go back too."""
    if not job_ids:
        return
    conn.execute(_UNCLAIM, {"ids": list(job_ids), "now": now, "retry": retry_at})
    for job_id in job_ids:
        spending.settle(conn, job_id, kept=False)


_UNCLAIM: Final = (
    sa.update(Job)
    .where(Job.id.in_(_IDS), Job.status == JobStatus.SUBMITTING)
    .values(
        status=JobStatus.PENDING,
        lease_until=None,
        updated_at=_NOW,
        next_attempt_at=sa.bindparam("retry", type_=Job.next_attempt_at.type),
    )
)


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
    back = query.values(status=JobStatus.PENDING, lease_until=None, updated_at=now)
    return conn.execute(back).rowcount


def expire_leases(conn: Connection, now: datetime, batch_id: int | None = None) -> int:
    """submitting rows whose worker died mid-request: a task may exist, so `in_doubt`, and
    the price each claim held is counted as spent. Queued rows a worker held for a later wave
    of its group (`hold`) and never claimed go back to pending: nothing was sent."""
    expired = sa.and_(Job.lease_until < now, Job.status == JobStatus.SUBMITTING)
    held = sa.and_(Job.lease_until < now, Job.status == JobStatus.QUEUED)
    if batch_id is not None:
        expired = sa.and_(expired, Job.batch_id == batch_id)
        held = sa.and_(held, Job.batch_id == batch_id)
    conn.execute(
        sa.update(Job)
        .where(held)
        .values(status=JobStatus.PENDING, lease_until=None, updated_at=now)
    )
    return conn.execute(
        sa.update(Job)
        .where(expired)
        .values(
            status=JobStatus.IN_DOUBT,
            error_kind=ErrorKind.AMBIGUOUS,
            error="no outcome was recorded before the row's lease ran out (the worker "
            "stopped, or could not reach the database, during the request); the provider may "
            "have created (and billed) a task: not resent",
            lease_until=None,
            finished_at=now,
            updated_at=now,
            **spending.keep_held(),
        )
    ).rowcount
