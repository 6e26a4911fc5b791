"""What every process knows of each account, in the database beside the rows: paused (and
why), cooling down after failures in a row, what it committed today, how many rows are out
through it. The claim reads it with the accounts' rows locked (`candidates`), so workers on
several hosts take turns and no account is overfilled."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.accounts.routing import cool_down
from veobatch.store.tables import Job, RelayAccount
from veobatch.store.upsert import insert_for

ACTIVE = "active"
PAUSED = "paused"
_OUT = (Job.status == "submitting") | (Job.status == "submitted")


def ensure(conn: Connection, names: Iterable[str]) -> None:
    """A row for each account of `names` that has none yet (active, nothing spent)."""
    insert = insert_for(conn)
    for name in names:
        conn.execute(insert(RelayAccount).values(name=name).on_conflict_do_nothing())


def states(conn: Connection, names: Sequence[str], *, lock: bool = False) -> dict[str, Any]:
    """The rows of accounts `names` (locked until the transaction ends, with `lock`)."""
    query = sa.select(RelayAccount).where(RelayAccount.name.in_(list(names)))
    if lock:
        query = query.order_by(RelayAccount.name).with_for_update()
    return {row.name: row for row in conn.execute(query)}


def lock(conn: Connection, names: Iterable[str]) -> None:
    """Lock the rows of accounts `names` until the transaction ends, in one order (by name).
    A transaction that changes an account's row and a batch's takes the account's first, as
    the claim does, so two of them never wait on each other (PostgreSQL)."""
    wanted = sorted(set(names))
    if wanted:
        conn.execute(
            sa.select(RelayAccount.name)
            .where(RelayAccount.name.in_(wanted))
            .order_by(RelayAccount.name)
            .with_for_update()
        ).all()


def all_states(conn: Connection) -> list[Any]:
    return list(conn.execute(sa.select(RelayAccount).order_by(RelayAccount.name)))


def in_flight(conn: Connection, names: Sequence[str] | None = None) -> dict[str, int]:
    """Rows being sent or generating, per account."""
    query = sa.select(Job.account, sa.func.count()).where(_OUT).group_by(Job.account)
    if names is not None:
        query = query.where(Job.account.in_(list(names)))
    return {str(name): int(count) for name, count in conn.execute(query) if name is not None}


def spent_today(row: Any, today: date) -> int:
    """What account row `row` committed on `today` (0 once the day has turned)."""
    return int(row.spent_micros) if row is not None and row.spend_day == today else 0


def spend(conn: Connection, amounts: Mapping[str, int], day: date) -> None:
    """Add each amount to its account's spending of `day` (a new day starts from it)."""
    for name, amount in amounts.items():
        if not amount:
            continue
        conn.execute(
            sa.update(RelayAccount)
            .where(RelayAccount.name == name)
            .values(
                spent_micros=sa.case(
                    (RelayAccount.spend_day == day, RelayAccount.spent_micros + amount),
                    else_=amount,
                ),
                spend_day=day,
            )
        )


def give_back(conn: Connection, name: str | None, day: date | None, amount: int) -> None:
    """A held price that made no task, back to its account's spending of `day` (if still it)."""
    if name is None or day is None or not amount:
        return
    conn.execute(
        sa.update(RelayAccount)
        .where(RelayAccount.name == name, RelayAccount.spend_day == day)
        .values(spent_micros=RelayAccount.spent_micros - amount)
    )


def pause(conn: Connection, name: str, reason: str, now: datetime, *, error: bool = True) -> bool:
    """Pause account `name` with `reason` (an answer of its relay, kept as its last error too;
    not `error`: a person's); False if it was paused already."""
    values: dict[str, Any] = {"state": PAUSED, "reason": reason, "changed_at": now}
    if error:
        values.update(last_error=reason, last_error_at=now)
    changed = conn.execute(
        sa.update(RelayAccount)
        .where(RelayAccount.name == name, RelayAccount.state == ACTIVE)
        .values(**values)
    ).rowcount
    return bool(changed)


def resume(conn: Connection, names: Sequence[str], now: datetime) -> list[str]:
    """Resume the accounts of `names` that are paused (their strikes forgotten); those resumed."""
    resumed = conn.execute(
        sa.update(RelayAccount)
        .where(RelayAccount.name.in_(list(names)), RelayAccount.state == PAUSED)
        .values(state=ACTIVE, reason=None, changed_at=now, strikes=0, cool_until=None)
        .returning(RelayAccount.name)
    )
    return sorted(resumed.scalars())


@dataclass(slots=True)
class Answers:
    """What one account answered a group of requests: tasks made, failures that say the
    account itself is in trouble (5xx, refused connections), and the last error."""

    tasks: int = 0
    failures: int = 0
    last_error: str | None = None


def answered(conn: Connection, answers: Mapping[str, Answers], now: datetime) -> None:
    """Each account's strikes after `answers`: a task made clears them, failures add to them,
    and BREAKER of them in a row cool the account down (`routing.cool_down`)."""
    for name, seen in answers.items():
        if seen.tasks and not seen.failures:
            conn.execute(
                sa.update(RelayAccount)
                .where(RelayAccount.name == name, RelayAccount.strikes > 0)
                .values(strikes=0, cool_until=None)
            )
            continue
        row = conn.execute(
            sa.select(RelayAccount.strikes).where(RelayAccount.name == name)
        ).scalar()
        if row is None:
            continue
        strikes = 0 if seen.tasks else int(row)
        strikes += seen.failures
        values: dict[str, Any] = {"strikes": strikes}
        pause_for = cool_down(strikes)
        if pause_for is not None:
            values["cool_until"] = now + pause_for
        if seen.last_error is not None:
            values.update(last_error=seen.last_error, last_error_at=now)
        conn.execute(sa.update(RelayAccount).where(RelayAccount.name == name).values(**values))


def noted(conn: Connection, name: str, error: str, now: datetime) -> None:
    """An account's last error, for `veo-batch accounts` (a 429, say)."""
    conn.execute(
        sa.update(RelayAccount)
        .where(RelayAccount.name == name)
        .values(last_error=error, last_error_at=now)
    )
