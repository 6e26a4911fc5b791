"""The row state changes, each one conditional SQL statement (or one short transaction).

Every change names the state it expects (`WHERE status = 'queued'`), so a message delivered
twice, two schedulers, or a worker that comes back late change nothing they should not.
Times are UTC and come from the caller, which keeps these functions easy to test.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.lifecycle import spending, webhooks
from veobatch.lifecycle.poll_rules import Pacing, PollOutcome
from veobatch.lifecycle.submit_rules import Outcome
from veobatch.states import IN_FLIGHT, OPEN, BatchState, ErrorKind, JobStatus
from veobatch.store import per_row
from veobatch.store.queries import RowFilter, sent_as_new
from veobatch.store.tables import Attempt, Batch, Job


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


def unclaim(conn: Connection, job_ids: Sequence[int], now: datetime) -> None:
    """Claimed rows not sent (their price did not fit, the process is stopping, a 429 of
    their group) go back to pending, untouched; the prices their claims held go back too."""
    if not job_ids:
        return
    conn.execute(_UNCLAIM, {"ids": list(job_ids), "now": now})
    for job_id in job_ids:
        spending.settle(conn, job_id, kept=False)


_UNCLAIM: Final = (
    sa.update(Job)
    .where(Job.id.in_(_IDS), Job.status == JobStatus.SUBMITTING)
    .values(status=JobStatus.PENDING, lease_until=None, updated_at=_NOW)
)


@dataclass(frozen=True, slots=True)
class Attempted:
    """One submission attempt of a claimed row, to be recorded: the row as claimed, what came
    of it and when, and (where its images were uploaded) its new image entries."""

    job: sa.Row[Any]
    outcome: Outcome
    at: datetime
    images: list[Any] | None = None
    holds: bool = False  # the claim holds a price (to keep or give back)


def record(conn: Connection, attempts: Sequence[Attempted], pacing: Pacing) -> None:
    """The outcomes of a group's attempts and their history rows, in the caller's
    transaction: one statement per kind of outcome, one for the history.

    A task_id is recorded even if the row's lease ran out meanwhile (it is a fact about a
    task that exists); any other outcome only applies to a row still `submitting`. A new task
    gets its first poll and its deadline from `pacing`. Held prices are kept where a task
    exists or may, given back otherwise; an outcome that pauses pauses its batch.
    """
    if not attempts:
        return
    shapes: dict[tuple[bool, bool, bool], list[Attempted]] = {}
    for attempt in attempts:
        outcome = attempt.outcome
        shape = (
            outcome.task_id is not None,
            outcome.status in (JobStatus.FAILED, JobStatus.IN_DOUBT),
            attempt.images is not None,
        )
        shapes.setdefault(shape, []).append(attempt)
    for (has_task, finished, images), group in shapes.items():
        per_row.execute(
            conn,
            functools.partial(_recording, has_task, finished, images),
            [_recorded(a, pacing) for a in group],
            key="row_id",
        )
    per_row.execute(conn, _history_of, [_attempt_line(a) for a in attempts])
    kept = (JobStatus.SUBMITTED, JobStatus.IN_DOUBT)
    holding = [a for a in attempts if a.holds]
    spending.settle_kept(conn, [a.job.id for a in holding if a.outcome.status in kept])
    for attempt in holding:
        if attempt.outcome.status not in kept:
            spending.settle(conn, attempt.job.id, kept=False)
    for attempt in attempts:
        if attempt.outcome.pause_reason is not None:
            pause(conn, attempt.job.batch_id, attempt.outcome.pause_reason, attempt.at)


# The fields of a recorded outcome, bound per row (see `_recorded`).
_RECORDED: Final[per_row.Fields] = {
    "row_id": Job.id.type,
    "new_status": Job.status.type,
    "new_error": Job.error.type,
    "new_error_kind": Job.error_kind.type,
    "new_http_status": Job.http_status.type,
    "at": Job.updated_at.type,
    "new_next_attempt_at": Job.next_attempt_at.type,
    "added": Job.attempts.type,
}
_RECORDED_TASK: Final[per_row.Fields] = {
    "new_task_id": Job.task_id.type,
    "first_poll": Job.next_poll_at.type,
    "deadline": Job.poll_until.type,
}
_RECORDED_IMAGES: Final[per_row.Fields] = {"new_images": Job.images.type}
_HISTORY_FIELDS: Final[per_row.Fields] = {
    "job_id": Attempt.job_id.type,
    "action": Attempt.action.type,
    "at": Attempt.at.type,
    "http_status": Attempt.http_status.type,
    "task_id": Attempt.task_id.type,
    "remote_status": Attempt.remote_status.type,
    "error": Attempt.error.type,
    "error_kind": Attempt.error_kind.type,
}


def _recorded_fields(has_task: bool, images: bool) -> per_row.Fields:
    return {
        **_RECORDED,
        **(_RECORDED_TASK if has_task else {}),
        **(_RECORDED_IMAGES if images else {}),
    }


@functools.cache
def _recording(has_task: bool, finished: bool, images: bool, together: bool) -> sa.Update:
    """The UPDATE of one kind of outcome, its values given per row (see `_recorded`)."""
    row = per_row.columns(_recorded_fields(has_task, images), together)
    expected = Job.status == JobStatus.SUBMITTING  # (no IN: executemany cannot expand one)
    if has_task:
        expected = sa.or_(expected, Job.status == JobStatus.IN_DOUBT)
    values: dict[str, Any] = {
        "status": row["new_status"],
        "error": row["new_error"],
        "error_kind": row["new_error_kind"],
        "http_status": row["new_http_status"],
        "lease_until": None,
        "updated_at": row["at"],
        "next_attempt_at": row["new_next_attempt_at"],
        "attempts": Job.attempts + row["added"],
    }
    if has_task:
        values.update(
            task_id=row["new_task_id"],
            submitted_at=row["at"],
            polls=0,
            next_poll_at=row["first_poll"],
            poll_until=row["deadline"],
        )
    if finished:
        values["finished_at"] = row["at"]
    elif has_task:  # (a row in doubt whose answer came after all is not finished)
        values["finished_at"] = None
    if images:
        values["images"] = row["new_images"]
    found = per_row.matching(Job.id.expression, row["row_id"], "row_id", together)
    return sa.update(Job).where(found, expected).values(**values)


@functools.cache
def _history_of(together: bool) -> sa.Insert:
    """The INSERT of a group's history lines (see `_attempt_line`)."""
    if not together:
        return sa.insert(Attempt)
    row = per_row.columns(_HISTORY_FIELDS, together)
    return sa.insert(Attempt).from_select(list(row), sa.select(*row.values()))


def _recorded(attempt: Attempted, pacing: Pacing) -> dict[str, Any]:
    outcome, at = attempt.outcome, attempt.at
    retry = at + timedelta(seconds=outcome.retry_in) if outcome.retry_in else None
    params: dict[str, Any] = {
        "row_id": attempt.job.id,
        "new_status": outcome.status,
        "new_error": outcome.error,
        "new_error_kind": outcome.error_kind,
        "new_http_status": outcome.http_status,
        "at": at,
        "new_next_attempt_at": retry,
        "added": 1 if outcome.counts_as_attempt else 0,
    }
    if outcome.task_id is not None:
        params.update(
            new_task_id=outcome.task_id,
            first_poll=at + timedelta(seconds=pacing.delay),
            deadline=at + timedelta(seconds=pacing.deadline),
        )
    if attempt.images is not None:
        params["new_images"] = attempt.images
    return params


def _attempt_line(attempt: Attempted) -> dict[str, Any]:
    outcome = attempt.outcome
    return {
        "job_id": attempt.job.id,
        "action": "submit",
        "at": attempt.at,
        "http_status": outcome.http_status,
        "task_id": outcome.task_id,
        "remote_status": None,
        "error": outcome.error,
        "error_kind": outcome.error_kind,
    }


def _history(
    conn: Connection,
    job_id: int,
    action: str,
    now: datetime,
    task_id: str | None,
    outcome: Outcome | PollOutcome,
    remote_status: str | None = None,
) -> None:
    """A line of the row's history: what was tried, when, and what came of it."""
    conn.execute(
        sa.insert(Attempt).values(
            job_id=job_id,
            action=action,
            at=now,
            http_status=outcome.http_status,
            task_id=task_id,
            remote_status=remote_status,
            error=outcome.error,
            error_kind=outcome.error_kind,
        )
    )


def pause(conn: Connection, batch_id: int, reason: str, now: datetime) -> bool:
    paused = bool(
        conn.execute(
            sa.update(Batch)
            .where(Batch.id == batch_id, Batch.state == BatchState.ACTIVE)
            .values(state=BatchState.PAUSED, pause_reason=reason, updated_at=now)
        ).rowcount
    )
    if paused:
        webhooks.notify(conn, [batch_id], "batch.paused", now)
    return paused


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


def finish_batches(conn: Connection, now: datetime) -> int:
    """Active batches with no row left to send or to follow become `finished` (and their
    webhooks are told)."""
    open_rows = sa.select(Job.id).where(Job.batch_id == Batch.id, Job.status.in_(OPEN))
    finished = list(
        conn.execute(
            sa.update(Batch)
            .where(Batch.state == BatchState.ACTIVE, ~sa.exists(open_rows))
            .values(state=BatchState.FINISHED, updated_at=now)
            .returning(Batch.id)
        ).scalars()
    )
    webhooks.notify(conn, finished, "batch.finished", now)
    return len(finished)


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


def set_budget(conn: Connection, batch_id: int, budget: int | None) -> None:
    """The most the batch may commit, in micro-units (None: no cap)."""
    conn.execute(sa.update(Batch).where(Batch.id == batch_id).values(budget_micros=budget))


def set_webhook(conn: Connection, batch_id: int, url: str | None) -> None:
    """The URL told when the batch finishes or pauses (None: no longer told)."""
    conn.execute(sa.update(Batch).where(Batch.id == batch_id).values(webhook_url=url))


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
        sa.update(Job)
        .where(chosen, sent_as_new())
        .values(
            status=JobStatus.PENDING,
            attempts=0,
            next_attempt_at=None,
            task_id=None,
            remote_status=None,
            progress=None,
            video_url=None,
            polls=0,
            next_poll_at=None,
            poll_until=None,
            video_path=None,
            video_bytes=None,
            video_sha256=None,
            downloads=0,
            download_error=None,
            next_download_at=None,
            finished_at=None,
            review=None,  # a new video: not reviewed yet
            reviewed_at=None,
            updated_at=now,
        )
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


# ---------------------------------------------------------------------------------- polls


def due_polls(
    conn: Connection,
    now: datetime,
    limit: int,
    claim: timedelta,
    batch_ids: Sequence[int] | None = None,
) -> list[int]:
    """Up to `limit` submitted rows whose next poll is due, longest waiting first; their
    next poll moves `claim` ahead, so the next round does not send them again. A poll that
    is lost (a worker killed, a message gone) is simply due again then."""
    return _claim_due(conn, Job.next_poll_at, JobStatus.SUBMITTED, now, limit, claim, batch_ids)


def _claim_due(
    conn: Connection,
    due_at: sa.orm.InstrumentedAttribute[datetime | None],
    status: JobStatus,
    now: datetime,
    limit: int,
    claim: timedelta,
    batch_ids: Sequence[int] | None,
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
    transaction; False if the row was no longer `submitted` (rerun, cancelled meanwhile)."""
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
        _history(conn, job.id, "poll", now, job.task_id, outcome, outcome.remote_status)
    if outcome.pause_reason is not None:
        pause(conn, job.batch_id, outcome.pause_reason, now)
    return bool(changed)


# ---------------------------------------------------------------------------------- downloads


def due_downloads(
    conn: Connection,
    now: datetime,
    limit: int,
    claim: timedelta,
    batch_ids: Sequence[int] | None = None,
) -> list[int]:
    """Up to `limit` succeeded rows whose video is due to be downloaded; claimed like polls."""
    return _claim_due(conn, Job.next_download_at, JobStatus.SUCCEEDED, now, limit, claim, batch_ids)


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
