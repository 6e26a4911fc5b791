"""What is due now, decided in one place for both dispatchers.

The distributed scheduler (`veobatch.scheduler`) and `veo-batch run` (`embedded_runner`) hand
work to different hands (Celery messages; lanes and threads of one process), but what is due
is the same question, answered here in one transaction by `due_work`:

1. rows whose sender died mid-request (their lease ran out) become `in_doubt`, never resent;
2. rows `queued` with no message naming them (a Redis restart) go back to `pending`;
3. pending rows of active batches become `queued`, up to the room the caller has (a count, or
   a queue kept `depth` deep and topped up once a quarter of it has gone), never more than
   `max_in_flight` rows out at once;
4. submitted rows whose next poll is due, and succeeded rows whose video is due, are claimed
   for `poll_claim` and `DOWNLOAD_CLAIM`, so a poll or a download handed out and lost is only
   late, due again once its claim is over;
5. batches with nothing left to send or follow become `finished`.

The caller says how much it can take (`Wanted`); `Due` is what it should hand out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.lifecycle import transitions
from veobatch.states import JobStatus
from veobatch.store.tables import Job

GRACE: Final = timedelta(seconds=10)  # a queued row older than this without a message is lost
DOWNLOAD_CLAIM: Final = timedelta(minutes=15)  # a download handed out is not handed out again


@dataclass(frozen=True, slots=True)
class Rules:
    """What limits the hand-out, from the settings: how long a poll handed out stays
    claimed, rows out at once, and how long a queued row may wait for its message before the
    message counts as lost."""

    poll_claim: timedelta
    max_in_flight: int | None = None
    grace: timedelta = GRACE
    # The accounts whose tasks this dispatcher follows (None: every one): a task is polled
    # only through the account that made it, so one whose account left the file waits.
    accounts: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue of messages the caller keeps (the scheduler's): how deep, how many rows a
    message names, and how many rows the messages waiting or delivered name now."""

    depth: int
    group: int
    in_messages: int


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a dispatcher can take this round: rows to submit (`submits`, or the room left in
    its `queue`), due polls, due downloads; and whether to look for leases run out and for
    batches that are over."""

    submits: int = 0
    queue: Queue | None = None
    polls: int = 0
    downloads: int = 0
    expire: bool = False
    finish: bool = False


@dataclass(slots=True)
class Due:
    """What to hand out (row ids), and what changed in the store while deciding it."""

    submits: list[int] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    downloads: list[int] = field(default_factory=list)
    expired: int = 0  # rows now in doubt
    requeued: int = 0  # queued rows whose message was lost, pending again
    queued: int = 0  # rows queued (in messages) once this round is done, when keeping a queue

    def __bool__(self) -> bool:
        return bool(self.submits or self.polls or self.downloads)


def due_work(
    conn: Connection,
    now: datetime,
    wanted: Wanted,
    rules: Rules,
    batch_ids: Sequence[int] | None = None,
) -> Due:
    """What is due of batches `batch_ids` (all when None), claimed in `conn`'s transaction:
    the caller hands it out once that transaction is committed, so a worker never gets a row
    whose change it cannot see yet."""
    due = Due()
    if wanted.expire:
        batches: Sequence[int | None] = [None] if batch_ids is None else batch_ids
        due.expired = sum(transitions.expire_leases(conn, now, batch) for batch in batches)
    submits = wanted.submits
    if wanted.queue is not None:
        queued = queued_rows(conn)
        lost = queued - wanted.queue.in_messages
        if lost > 0:
            due.requeued = transitions.requeue(conn, now, older_than=rules.grace, limit=lost)
            queued -= due.requeued
        submits = room(wanted.queue, queued)
    if submits > 0:
        due.submits = transitions.release(
            conn, now, submits, batch_ids, max_in_flight=rules.max_in_flight
        )
    if wanted.queue is not None:
        due.queued = queued + len(due.submits)
    if wanted.polls > 0:
        due.polls = transitions.due_polls(
            conn, now, wanted.polls, rules.poll_claim, batch_ids, rules.accounts
        )
    if wanted.downloads > 0:
        due.downloads = transitions.due_downloads(
            conn, now, wanted.downloads, DOWNLOAD_CLAIM, batch_ids
        )
    if wanted.finish:
        transitions.finish_batches(conn, now)
    return due


def room(queue: Queue, queued: int) -> int:
    """Rows to release into a queue holding `queued`: it is topped up to its depth once a
    quarter of it (or a message's group) has gone, so a busy deployment tops it up in a few
    large rounds a second, not twenty small ones."""
    free = queue.depth - queued
    return free if free >= max(queue.group, queue.depth // 4) else 0


def queued_rows(conn: Connection) -> int:
    """Rows `queued` now, of every batch."""
    count = sa.select(sa.func.count()).where(Job.status == JobStatus.QUEUED)
    return int(conn.execute(count).scalar_one())
