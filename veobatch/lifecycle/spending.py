"""The money side of a claim, in the claim's own transaction, so it is exact across workers.

`reserve` adds a row's price to its batch's `committed` and to the day's, each with a
conditional UPDATE that only succeeds while the sum still fits the budget (and the daily cap);
`reserve_rows` does the same for a claimed group: the prices of a batch's rows together, in one
UPDATE each, and row by row only when the whole does not fit (so the rows that fit still go).
The database decides: PostgreSQL locks the batch's row for the UPDATE and checks the
condition again on the row as the other transaction left it; SQLite has one writer at a time.
So four workers on two hosts racing for the last dollar can never go one row over. The price
stays *held* on the row until the outcome: a task, or maybe one (`in_doubt`, a lease that ran
out), keeps it as the row's cost; an answer that made no task (a 429, a 400, a stop before the
POST) gives it back (`settle`), to its account's day as well (`accounts.store`: an account's
own daily budget is checked by the claim, which holds the account's row).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.accounts import store as accounts
from veobatch.lifecycle import spend_rules
from veobatch.lifecycle.spend_rules import Spending
from veobatch.store.tables import Batch, Job, SpendDay
from veobatch.store.upsert import insert_for


def reserve(conn: Connection, job: sa.Row[Any], now: datetime, spending: Spending) -> str | None:
    """Hold the price of claimed row `job`; None if it fits, else why not (the batch is then
    to pause with that reason, and nothing was held)."""
    if job.held_micros:  # an earlier claim of the row was never settled (a rerun while it was
        # submitting): it may have made a task, so it counts as spent before this one holds
        conn.execute(sa.update(Job).where(Job.id == job.id).values(**keep_held()))
    price = spending.price_of(job.model)
    if price is None:
        budget = conn.execute(
            sa.select(Batch.budget_micros).where(Batch.id == job.batch_id)
        ).scalar()
        return spend_rules.unpriced(job.model) if spending.needs_price(budget) else None
    if not _take_from_budget(conn, job.batch_id, price):
        batch = conn.execute(
            sa.select(Batch.name, Batch.budget_micros, Batch.committed_micros).where(
                Batch.id == job.batch_id
            )
        ).one()
        return spend_rules.over_budget(
            spending, batch.name, price, batch.committed_micros, batch.budget_micros or 0
        )
    day = now.date()
    if spending.daily_cap is not None and not _take_from_day(conn, day, price, spending.daily_cap):
        _add(conn, job.batch_id, None, -price)  # the batch's share goes back
        committed = conn.execute(
            sa.select(SpendDay.committed_micros).where(SpendDay.day == day)
        ).scalar_one()
        return spend_rules.over_daily_cap(spending, price, committed, day.isoformat())
    conn.execute(sa.update(Job).where(Job.id == job.id).values(held_micros=price, held_day=day))
    return None


def reserve_rows(
    conn: Connection, jobs: Sequence[sa.Row[Any]], now: datetime, spending: Spending
) -> tuple[list[sa.Row[Any]], list[tuple[int, str]]]:
    """Hold the prices of claimed rows `jobs`: (the rows that may go, in order; the batches
    to pause, each with why). A batch whose next price does not fit keeps none of its later
    rows of the group (they are to go back, nothing held for them)."""
    unsettled = [job.id for job in jobs if job.held_micros]
    if unsettled:  # see `reserve`: an earlier claim of these rows may have made a task
        conn.execute(sa.update(Job).where(Job.id.in_(unsettled)).values(**keep_held()))
    by_batch: dict[int, list[sa.Row[Any]]] = {}
    for job in jobs:
        by_batch.setdefault(job.batch_id, []).append(job)
    unpriced = {job.batch_id for job in jobs if spending.price_of(job.model) is None}
    budgets: dict[int, int | None] = {}
    if unpriced:
        found = conn.execute(_BUDGETS, {"ids": sorted(unpriced)})
        budgets = {int(bid): budget for bid, budget in found}
    going: list[sa.Row[Any]] = []
    refused: list[tuple[int, str]] = []
    for batch_id, rows in by_batch.items():
        if _hold_together(conn, batch_id, rows, now, spending, budgets):
            going += rows
            continue
        for job in rows:  # one by one: the rows that fit go, the first that does not stops
            why = reserve(conn, job, now, spending)  # (a second keep_held moves 0)
            if why is not None:
                refused.append((batch_id, why))
                break
            going.append(job)
    order = {job.id: n for n, job in enumerate(jobs)}
    return sorted(going, key=lambda job: order[job.id]), refused


def _hold_together(
    conn: Connection,
    batch_id: int,
    rows: Sequence[sa.Row[Any]],
    now: datetime,
    spending: Spending,
    budgets: dict[int, int | None],
) -> bool:
    """Whether the rows of one batch may all go, their prices held with one conditional
    UPDATE of the batch (and one of the day): False, with nothing held, if any is unpriced
    where prices are needed, or the sum does not fit (`reserve` then decides row by row)."""
    prices = [spending.price_of(job.model) for job in rows]
    if all(price is None for price in prices):
        return not spending.needs_price(budgets.get(batch_id))
    if any(price is None for price in prices):
        return False
    total = sum(price or 0 for price in prices)
    if not _take_from_budget(conn, batch_id, total):
        return False
    day = now.date()
    if spending.daily_cap is not None and not _take_from_day(conn, day, total, spending.daily_cap):
        _add(conn, batch_id, None, -total)  # the batch's share goes back
        return False
    for price in set(prices):
        ids = [job.id for job, p in zip(rows, prices, strict=True) if p == price]
        conn.execute(_HOLD, {"ids": ids, "price": price, "day": day})
    return True


def _take_from_budget(conn: Connection, batch_id: int, amount: int) -> bool:
    """Add `amount` to what the batch has committed, if it still fits its budget (one
    conditional UPDATE: the database decides between racing workers)."""
    return bool(conn.execute(_TAKE_FROM_BUDGET, {"batch": batch_id, "amount": amount}).rowcount)


def _take_from_day(conn: Connection, day: Any, amount: int, cap: int) -> bool:
    """Add `amount` to the day's committed spending, if it still fits the daily cap."""
    insert = insert_for(conn)
    conn.execute(insert(SpendDay).values(day=day, committed_micros=0).on_conflict_do_nothing())
    took = conn.execute(
        sa.update(SpendDay)
        .where(SpendDay.day == day, SpendDay.committed_micros + amount <= cap)
        .values(committed_micros=SpendDay.committed_micros + amount)
    ).rowcount
    return bool(took)


def settle_kept(conn: Connection, job_ids: Sequence[int]) -> None:
    """The held prices of rows `job_ids` become their cost (a task exists, or may): one
    UPDATE. A row settled already (its lease ran out) holds nothing and is left alone."""
    if job_ids:
        conn.execute(_SETTLE_KEPT, {"ids": list(job_ids)})


def settle(conn: Connection, job_id: int, kept: bool) -> None:
    """The outcome of row `job_id`'s claim is known: `kept` (a task exists, or may) makes the
    held price its cost; otherwise it goes back to the batch and the day. Once only: a row
    settled already (by the lease running out, say) holds nothing."""
    held = conn.execute(
        sa.select(Job.batch_id, Job.held_micros, Job.held_day, Job.account).where(Job.id == job_id)
    ).one_or_none()
    if held is None or not held.held_micros:
        return
    values: dict[str, Any] = {"held_micros": 0, "held_day": None}
    if kept:
        values["cost_micros"] = Job.cost_micros + held.held_micros
    took = conn.execute(
        sa.update(Job).where(Job.id == job_id, Job.held_micros == held.held_micros).values(**values)
    ).rowcount
    if took and not kept:  # (the account's row first, as every claim takes them)
        accounts.give_back(conn, held.account, held.held_day, held.held_micros)
        _add(conn, held.batch_id, held.held_day, -held.held_micros)


def refund(conn: Connection, job: sa.Row[Any], amount: int) -> None:
    """Row `job`'s last task was not billed after all (a filtered video the provider does
    not charge): `amount` (at most what the row cost) goes back to the batch, the day it
    was submitted (UTC) and its account's day."""
    day = job.submitted_at.date() if job.submitted_at is not None else None
    took = conn.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.cost_micros >= amount)
        .values(cost_micros=Job.cost_micros - amount)
    ).rowcount
    if took and amount:
        accounts.give_back(conn, job.account, day, amount)
        _add(conn, job.batch_id, day, -amount)


def keep_held() -> dict[str, Any]:
    """The values that make the held price of the rows an UPDATE changes their cost: for
    statements that settle many rows at once (leases that ran out)."""
    return {"cost_micros": Job.cost_micros + Job.held_micros, "held_micros": 0, "held_day": None}


def _add(conn: Connection, batch_id: int, day: Any, amount: int) -> None:
    conn.execute(
        sa.update(Batch)
        .where(Batch.id == batch_id)
        .values(committed_micros=Batch.committed_micros + amount)
    )
    if day is not None:
        conn.execute(
            sa.update(SpendDay)
            .where(SpendDay.day == day)
            .values(committed_micros=SpendDay.committed_micros + amount)
        )


# The statements of every claim and outcome, built once (the hot path of a submission).
_IDS: Final[sa.BindParameter[list[int]]] = sa.bindparam("ids", expanding=True)
_AMOUNT: Final = sa.bindparam("amount", type_=Batch.committed_micros.type)
_BUDGETS: Final = sa.select(Batch.id, Batch.budget_micros).where(Batch.id.in_(_IDS))
_TAKE_FROM_BUDGET: Final = (
    sa.update(Batch)
    .where(
        Batch.id == sa.bindparam("batch"),
        sa.or_(
            Batch.budget_micros.is_(None), Batch.committed_micros + _AMOUNT <= Batch.budget_micros
        ),
    )
    .values(committed_micros=Batch.committed_micros + _AMOUNT)
)
_HOLD: Final = (
    sa.update(Job)
    .where(Job.id.in_(_IDS))
    .values(
        held_micros=sa.bindparam("price", type_=Job.held_micros.type),
        held_day=sa.bindparam("day", type_=Job.held_day.type),
    )
)
_SETTLE_KEPT: Final = (
    sa.update(Job).where(Job.id.in_(_IDS), Job.held_micros > 0).values(**keep_held())
)
