"""Reading batches and jobs back: counts per status, rows with their errors."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.errors import NotFoundError
from veobatch.states import PAID_FOR, ErrorKind, JobStatus
from veobatch.store.tables import Attempt, Batch, Job


@dataclass
class BatchSummary:
    id: int
    name: str
    state: str
    source: str
    pause_reason: str | None
    created_at: datetime
    counts: dict[str, int] = field(default_factory=dict)
    error_kinds: list[tuple[str | None, int]] = field(default_factory=list)  # `status` only
    # Money, in micro-units (veobatch.pricing): what rows spent (a task, or maybe one), what
    # the claims in flight hold, and the budget (None: none).
    spent: int = 0
    held: int = 0
    budget: int | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def committed(self) -> int:
        return self.spent + self.held

    @property
    def left(self) -> int | None:
        return None if self.budget is None else self.budget - self.committed


def utc(value: datetime | None) -> datetime | None:
    """Timestamps come back naive from SQLite (they are UTC) and aware from PostgreSQL."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def batch_summaries(
    conn: Connection, name: str | None = None, *, states: Sequence[str] | None = None
) -> list[BatchSummary]:
    """Batches (oldest first) with their row counts per status; one batch if `name` is given,
    only those in `states` if they are given (the others' rows are not counted).

    What a batch spent is its `committed` less what its rows hold: every claim adds its price
    to both the batch's `committed` and the row's `held`, and its outcome either moves the
    held price to the row's cost or takes it back from both (`lifecycle.spending`). So the few
    rows holding a price are summed (by their own index), never the whole batch."""
    query = sa.select(Batch).order_by(Batch.id)
    if name is not None:
        query = query.where(Batch.name == name)
    if states is not None:
        query = query.where(Batch.state.in_(list(states)))
    committed: dict[int, int] = {}
    batches: dict[int, BatchSummary] = {}
    for b in conn.execute(query):
        committed[b.id] = b.committed_micros
        batches[b.id] = BatchSummary(
            b.id,
            b.name,
            b.state,
            b.source,
            b.pause_reason,
            utc(b.created_at) or b.created_at,
            budget=b.budget_micros,
        )
    if name is not None and not batches:
        raise NotFoundError(f"no batch named {name!r}", "`veo-batch status` lists the batches")
    chosen = list(batches) if name is not None or states is not None else None
    for bid, counts in status_counts(conn, chosen).items():
        batches[bid].counts = counts
    holding = (
        sa.select(Job.batch_id, sa.func.sum(Job.held_micros))
        .where(Job.held_micros > 0)
        .group_by(Job.batch_id)
    )
    if chosen is not None:
        holding = holding.where(Job.batch_id.in_(chosen))
    held = {bid: int(amount) for bid, amount in conn.execute(holding)}
    for bid, summary in batches.items():
        summary.held = held.get(bid, 0)
        summary.spent = committed[bid] - summary.held
    return list(batches.values())


def status_counts(conn: Connection, batch_ids: Sequence[int] | None) -> dict[int, dict[str, int]]:
    """Each batch's rows counted per status (of `batch_ids`, or of every batch): the one
    query behind `status`, the live progress and the webhook bodies."""
    query = sa.select(Job.batch_id, Job.status, sa.func.count()).group_by(Job.batch_id, Job.status)
    if batch_ids is not None:
        query = query.where(Job.batch_id.in_(list(batch_ids)))
    counted: dict[int, dict[str, int]] = {bid: {} for bid in batch_ids or ()}
    for bid, status, count in conn.execute(query):
        counted.setdefault(bid, {})[status] = count
    return counted


def model_counts(
    conn: Connection, batch: int, rows: RowFilter, *, resent_only: bool = False
) -> dict[str, int]:
    """The batch's `rows` counted per model; `resent_only` leaves out timed-out rows with a
    task, which a rerun polls again instead of resending."""
    query = sa.select(Job.model, sa.func.count()).where(rows.where(batch))
    if resent_only:
        query = query.where(sent_as_new())
    return {row.model: int(row[1]) for row in conn.execute(query.group_by(Job.model))}


def sent_as_new() -> sa.ColumnElement[bool]:
    """The rows a rerun sends as new tasks: all but the timed-out rows that have a task,
    which it polls again (`sa.not_` of this: no part of it is ever NULL)."""
    return sa.or_(
        Job.status != JobStatus.FAILED,
        Job.error_kind.is_distinct_from(ErrorKind.TIMEOUT),
        Job.task_id.is_(None),
    )


def batch_id(conn: Connection, name: str) -> int:
    found = conn.execute(sa.select(Batch.id).where(Batch.name == name)).scalar()
    if found is None:
        raise NotFoundError(f"no batch named {name!r}", "`veo-batch status` lists the batches")
    return found


def error_kinds(conn: Connection, batch: int) -> list[tuple[str | None, int]]:
    """How many rows of the batch ended with each kind of error, most frequent first."""
    query = (
        sa.select(Job.error_kind, sa.func.count())
        .where(Job.batch_id == batch, Job.error_kind.is_not(None))
        .group_by(Job.error_kind)
        .order_by(sa.func.count().desc())
    )
    return [(kind, count) for kind, count in conn.execute(query)]


@dataclass(frozen=True)
class RowFilter:
    """Which rows of a batch a page, a count, an export or a rerun chooses: the one filter
    of them all. Each field given narrows the choice (empty: any); `reviews` may hold "none"
    for rows not reviewed; `text` is found in the prompt or the id, in any case."""

    statuses: Sequence[str] = ()
    kinds: Sequence[str] = ()
    refs: Sequence[str] = ()
    reviews: Sequence[str] = ()
    models: Sequence[str] = ()
    text: str | None = None

    def where(self, batch: int) -> sa.ColumnElement[bool]:
        """The condition on `jobs` that chooses these rows of batch `batch`."""
        chosen: list[sa.ColumnElement[bool]] = [Job.batch_id == batch]
        if self.statuses:
            chosen.append(Job.status.in_(list(self.statuses)))
        if self.kinds:
            chosen.append(Job.error_kind.in_(list(self.kinds)))
        if self.refs:
            chosen.append(Job.ref.in_(list(self.refs)))
        if self.reviews:
            marked = Job.review.in_([r for r in self.reviews if r != "none"])
            chosen.append(
                sa.or_(marked, Job.review.is_(None)) if "none" in self.reviews else marked
            )
        if self.models:
            chosen.append(Job.model.in_(list(self.models)))
        if self.text:
            text = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = f"%{text}%"
            chosen.append(
                sa.or_(Job.prompt.ilike(pattern, escape="\\"), Job.ref.ilike(pattern, escape="\\"))
            )
        return sa.and_(*chosen)

    def query(self, batch: int) -> sa.Select[Any]:
        """The rows chosen, in the order they were added."""
        return sa.select(Job).where(self.where(batch)).order_by(Job.id)

    def paid(self) -> RowFilter | None:
        """These rows, of the statuses whose rows have (or may have) a paid task; None if
        none of the statuses chosen has."""
        given = self.statuses or [status.value for status in JobStatus]
        paid = [str(status) for status in given if status in PAID_FOR]
        return replace(self, statuses=paid) if paid else None


def page_of(query: sa.Select[Any], limit: int, offset: int = 0) -> sa.Select[Any]:
    """`limit` rows of a `RowFilter.query` from `offset` on: the ids are found first (in an
    index: skipping 99,950 of them reads no row), then only those rows are read."""
    ids = query.with_only_columns(Job.id, maintain_column_froms=True).limit(limit).offset(offset)
    return sa.select(Job).where(Job.id.in_(ids.scalar_subquery())).order_by(Job.id)


def stream_jobs(
    conn: Connection, query: sa.Select[Any], chunk: int = 2_000
) -> Iterator[sa.Row[Any]]:
    """Rows of `query` fetched `chunk` at a time (a server-side cursor on PostgreSQL)."""
    result = conn.execution_options(stream_results=True, yield_per=chunk).execute(query)
    yield from result


def attempts_of(conn: Connection, query: sa.Select[Any]) -> list[tuple[str, sa.Row[Any]]]:
    """The attempts of the rows `query` selects, oldest first, each with its row's ref."""
    rows = query.subquery()
    history = (
        sa.select(rows.c.ref, Attempt)
        .join(Attempt, Attempt.job_id == rows.c.id)
        .order_by(Attempt.at, Attempt.id)
    )
    return [(row[0], row) for row in conn.execute(history)]


def count_jobs(conn: Connection, query: sa.Select[Any]) -> int:
    """How many rows a `RowFilter.query` chooses (counted in its index where it can be)."""
    counted = query.with_only_columns(sa.func.count(), maintain_column_froms=True).order_by(None)
    return int(conn.execute(counted).scalar_one())
