"""A batch's life: paused, resumed, reopened, cancelled, finished; its budget and webhook."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.accounts import store as accounts
from veobatch.lifecycle import webhooks
from veobatch.lifecycle.transitions.sending import batch_state
from veobatch.states import OPEN, BatchState, JobStatus
from veobatch.store.tables import Batch, Job


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
    """A paused (or finished) batch made active. The accounts whose pause stopped it (their
    reason is in its own) are resumed with it: a person who topped up a balance or fixed a key
    resumes the batch, and its account is tried again."""
    reason = conn.execute(sa.select(Batch.pause_reason).where(Batch.id == batch_id)).scalar()
    resumed = bool(
        conn.execute(
            sa.update(Batch)
            .where(Batch.id == batch_id, Batch.state.in_([BatchState.PAUSED, BatchState.FINISHED]))
            .values(state=BatchState.ACTIVE, pause_reason=None, updated_at=now)
        ).rowcount
    )
    if resumed and reason:
        stopped = [
            row.name
            for row in accounts.all_states(conn)
            if row.state == accounts.PAUSED and row.reason and row.reason in reason
        ]
        accounts.resume(conn, stopped, now)
    return resumed


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


def set_budget(conn: Connection, batch_id: int, budget: int | None) -> None:
    """The most the batch may commit, in micro-units (None: no cap)."""
    conn.execute(sa.update(Batch).where(Batch.id == batch_id).values(budget_micros=budget))


def set_webhook(conn: Connection, batch_id: int, url: str | None) -> None:
    """The URL told when the batch finishes or pauses (None: no longer told)."""
    conn.execute(sa.update(Batch).where(Batch.id == batch_id).values(webhook_url=url))
