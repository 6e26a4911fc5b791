"""The batches page at a glance: what every batch together is doing, what needs a person, and
the batches in the order they matter (those at work first). Pure: it adds up the service's
`overview`, which the page shows as it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from veobatch.service import Activity
from veobatch.states import UNSENT, BatchState, JobStatus

AT_WORK = (BatchState.ACTIVE, BatchState.PAUSED)


@dataclass(frozen=True)
class Glance:
    """Every batch added up (rows counted in the batches at work only, except `failed`)."""

    at_work: int  # batches active or paused
    paused: list[Activity]  # the paused ones: each says why, up front
    waiting: int  # rows with no task yet (pending, queued, being sent)
    generating: int  # rows whose task the provider is making
    per_minute: int  # rows that ended in the last minute, every batch together
    eta_seconds: float | None  # at that pace, until no row of a batch at work is open
    failed: int  # rows failed, in every batch
    spent: int  # micro-units, every batch
    priced: bool  # some batch has money to show (a price or a budget)
    batches: list[Activity]  # at work first (oldest first), then the rest (newest first)


def glance(overview: Sequence[Activity]) -> Glance:
    working = [a for a in overview if a.batch.state in AT_WORK]
    rest = [a for a in overview if a.batch.state not in AT_WORK]
    waiting = sum(a.batch.counts.get(status, 0) for a in working for status in UNSENT)
    generating = sum(a.batch.counts.get(JobStatus.SUBMITTED, 0) for a in working)
    per_minute = sum(a.per_minute for a in working)
    open_rows = waiting + generating
    return Glance(
        at_work=len(working),
        paused=[a for a in working if a.batch.state == BatchState.PAUSED],
        waiting=waiting,
        generating=generating,
        per_minute=per_minute,
        eta_seconds=open_rows / per_minute * 60 if per_minute and open_rows else None,
        failed=sum(a.batch.counts.get(JobStatus.FAILED, 0) for a in overview),
        spent=sum(a.batch.spent for a in overview),
        priced=any(a.batch.committed or a.batch.budget is not None for a in overview),
        batches=working + rest[::-1],
    )
