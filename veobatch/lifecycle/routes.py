"""The account of each claimed row, chosen in the claim's own transaction.

`route_claimed` reads each account as the claim must see it (its row in `accounts`, locked
until the claim commits, so workers on several hosts take turns; the rows out through it; its
next rate slot), lets `accounts.routing.route` choose, and writes the choice: each row's
account, its price held against its batch, the day and its account (`lifecycle.spending`), the
rows no account can take now back to pending for a moment, and the batches no account will
take paused with why.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.accounts import store
from veobatch.accounts.fitting import refused_by
from veobatch.accounts.routing import WAIT, Candidate, Row, route
from veobatch.errors import LimiterUnavailable
from veobatch.lifecycle import spending, transitions
from veobatch.lifecycle.sender import Account, Sender
from veobatch.store.queries import utc
from veobatch.store.tables import Job


@dataclass(slots=True)
class Routed:
    """The rows that go (each with its account, in claim order), the ids of those holding a
    price, and the batches paused (each with why)."""

    going: list[tuple[sa.Row[Any], Account]] = field(default_factory=list)
    holding: set[int] = field(default_factory=set)
    paused: list[tuple[int, str]] = field(default_factory=list)


def route_claimed(
    conn: Connection,
    claimed: Sequence[sa.Row[Any]],
    now: datetime,
    sender: Sender,
    *,
    resting: Collection[str] = (),
) -> Routed:
    """Route rows just claimed (in the claim's transaction). Accounts of `resting` answered
    this sender a moment ago in a way every request would be (not recorded yet): none of
    these rows goes to them."""
    routed = Routed()
    candidates = _candidates(conn, sender, now, resting)
    money = sender.accounts[0].spending.money
    picky = [
        (a.name, a.client.dialect) for a in sender.accounts if a.client.dialect.name != "relay"
    ]
    rows = [
        Row(j.id, j.batch_id, j.model, refused_by(picky, j.model, j.images, j.extra))
        for j in claimed
    ]
    routing = route(rows, candidates, now, money)
    if routing.waiting:
        retry = now + timedelta(seconds=routing.retry_in)
        transitions.unclaim(conn, routing.waiting, now, retry_at=retry)
    for batch_id, why in routing.stuck.items():
        if transitions.pause(conn, batch_id, why, now):
            routed.paused.append((batch_id, why))
    by_account: dict[str, list[sa.Row[Any]]] = {}
    for job in claimed:
        name = routing.going.get(job.id)
        if name is not None:
            by_account.setdefault(name, []).append(job)
    kept: set[int] = set()
    spent: dict[str, int] = {}
    for name, jobs in by_account.items():
        account = sender.account(name)
        assert account is not None  # (routed among the sender's own)
        conn.execute(_SET_ACCOUNT, {"ids": [job.id for job in jobs], "account": name})
        going, refused = spending.reserve_rows(conn, jobs, now, account.spending)
        prices = account.spending
        kept.update(job.id for job in going)
        routed.holding.update(j.id for j in going if prices.price_of(j.model) is not None)
        spent[name] = sum(prices.price_of(job.model) or 0 for job in going)
        routed.paused += [(b, why) for b, why in refused if transitions.pause(conn, b, why, now)]
    store.spend(conn, spent, now.date())
    back = [job.id for job in claimed if job.id in routing.going and job.id not in kept]
    transitions.unclaim(conn, back, now)
    for job in claimed:
        if job.id in kept:
            account = sender.account(routing.going[job.id])
            assert account is not None
            routed.going.append((job, account))
    return routed


def _candidates(
    conn: Connection, sender: Sender, now: datetime, resting: Collection[str]
) -> list[Candidate]:
    """Each account of `sender` as a claim sees it, its row locked for the claim."""
    names = sender.names
    rows = store.states(conn, names, lock=True)
    if len(rows) < len(names):  # (the first claim through a new account)
        store.ensure(conn, [name for name in names if name not in rows])
        rows = store.states(conn, names, lock=True)
    capped = [account.name for account in sender.accounts if account.max_in_flight is not None]
    out = store.in_flight(conn, capped) if capped else {}
    today = now.date()
    candidates = []
    for account in sender.accounts:
        row = rows[account.name]
        try:
            ready = account.limiter.peek()
        except LimiterUnavailable:  # (the send will find it too, and send nothing)
            ready = 0.0
        cool_until = utc(row.cool_until)
        if account.name in resting:
            cool_until = max(cool_until or now, now + timedelta(seconds=WAIT))
        candidates.append(
            Candidate(
                name=account.name,
                priority=account.priority,
                prices=account.spending.prices,
                models=account.models,
                paused=(row.reason or "paused") if row.state == store.PAUSED else None,
                cool_until=cool_until,
                strikes=row.strikes,
                in_flight=out.get(account.name, 0),
                cap=account.max_in_flight,
                spent=store.spent_today(row, today),
                daily_budget=account.daily_budget,
                ready_in=ready,
                interval=account.limiter.interval,
            )
        )
    return candidates


_SET_ACCOUNT = (
    sa.update(Job)
    .where(Job.id.in_(sa.bindparam("ids", expanding=True)))
    .values(account=sa.bindparam("account", type_=Job.account.type))
)
