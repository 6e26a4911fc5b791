"""Rows submitted in groups: a wave claimed in one statement and recorded in one transaction,
its slots booked together and sent at once, each request in its own slot, never late."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import pairwise
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import MOCK_KEY
from tests.helpers import load_prompts, sender_for
from veobatch.errors import ProviderError
from veobatch.lifecycle import routes, spending, transitions
from veobatch.lifecycle import submit as submit_module
from veobatch.lifecycle.fanout import Fanout
from veobatch.lifecycle.rate_limit import LocalRateLimiter, in_slots
from veobatch.lifecycle.spend_rules import Spending
from veobatch.lifecycle.submit import submit_rows
from veobatch.provider.client import ProviderClient
from veobatch.provider.mock import MockProvider
from veobatch.settings import Rate, Secret
from veobatch.states import ErrorKind
from veobatch.store.tables import Batch, Job


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements (and commits) `engine` runs meanwhile."""
    seen: list[str] = []

    def on_execute(*args: Any) -> None:
        seen.append(str(args[2]).split()[0])

    def on_commit(_conn: Any) -> None:
        seen.append("COMMIT")

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    sa.event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
        sa.event.remove(engine, "commit", on_commit)


def queued(engine: Engine, count: int, batch: str) -> list[int]:
    load_prompts(engine, [f"{batch} row {n}" for n in range(count)], batch)
    with engine.begin() as conn:
        return transitions.release(conn, transitions.utcnow(), count)


def submit(engine: Engine, mock: MockProvider, ids: list[int], fanout: Fanout) -> list[Any]:
    with ProviderClient(mock.url, Secret(MOCK_KEY)) as client:
        return submit_rows(engine, sender_for(client), ids, fanout=fanout)


def test_a_wave_of_eight_costs_the_statements_of_one_row(
    engine: Engine, mock: MockProvider
) -> None:
    one, eight = queued(engine, 2, "one"), queued(engine, 9, "eight")
    for warm_up in (one.pop(), eight.pop()):  # each batch's name is read once per process
        submit(engine, mock, [warm_up], Fanout(1))
    with statements(engine) as for_one:
        assert [o.status for o in submit(engine, mock, one, Fanout(1))] == ["submitted"]
    fanout = Fanout(8)
    try:
        with statements(engine) as for_eight:
            outcomes = submit(engine, mock, eight, fanout)
    finally:
        fanout.close()
    assert [o.status for o in outcomes] == ["submitted"] * 8
    assert mock.stats()["created"] == 11
    # The claim, its accounts read, its rows' account, its budget read; the outcomes, the
    # history, the account's strikes cleared.
    assert for_eight == for_one
    assert for_eight.count("UPDATE") == 4
    assert for_eight.count("COMMIT") == 2


def test_each_row_keeps_the_moment_its_own_answer_came(engine: Engine, mock: MockProvider) -> None:
    ids = queued(engine, 4, "b")
    submit(engine, mock, ids, Fanout(1))  # one after another, each answer later than the last
    with engine.connect() as conn:
        times = list(conn.execute(sa.select(Job.submitted_at).order_by(Job.id)).scalars())
    assert None not in times
    assert all(a < b for a, b in pairwise(t for t in times if t is not None))


def test_a_group_of_two_waves_holds_the_second_until_it_is_claimed(engine: Engine) -> None:
    """Rows waiting for a later wave carry a lease: if their worker dies they go back to
    pending (never sent), not to in_doubt, and not after an hour."""
    ids = queued(engine, 3, "b")
    now = transitions.utcnow()
    with engine.begin() as conn:
        transitions.claim_rows(conn, ids[:1], now, timedelta(seconds=5))
        transitions.hold(conn, ids[1:], now, timedelta(seconds=5))
        assert transitions.expire_leases(conn, now + timedelta(seconds=1)) == 0
        assert transitions.expire_leases(conn, now + timedelta(seconds=10)) == 1
        statuses = dict(conn.execute(sa.select(Job.id, Job.status)).all())
    assert [statuses[i] for i in ids] == ["in_doubt", "pending", "pending"]


def test_rows_of_a_paused_batch_go_back_to_pending_unclaimed(engine: Engine) -> None:
    ids = queued(engine, 2, "paused") + queued(engine, 2, "active")
    now = transitions.utcnow()
    with engine.begin() as conn:
        batch_id = conn.execute(sa.select(Job.batch_id).where(Job.id == ids[0])).scalar_one()
        transitions.pause(conn, batch_id, "for the test", now)
        claimed = transitions.claim_rows(conn, ids, now, timedelta(seconds=30))
        statuses = dict(conn.execute(sa.select(Job.id, Job.status)).all())
    assert [job.id for job in claimed] == ids[2:]
    assert [statuses[i] for i in ids] == ["pending", "pending", "submitting", "submitting"]


# ---------------------------------------------------------------------------------- slots


def test_slots_booked_together_are_those_booked_one_by_one() -> None:
    now = [100.0]
    together = LocalRateLimiter.for_rate(Rate.parse("10/s,burst=2"), clock=lambda: now[0])
    apart = LocalRateLimiter.for_rate(Rate.parse("10/s,burst=2"), clock=lambda: now[0])
    assert together.reserve_many(5) == pytest.approx([apart.reserve() for _ in range(5)])
    assert together.reserve_many(5) == pytest.approx([0.4, 0.5, 0.6, 0.7, 0.8])


def test_a_request_whose_slot_went_by_books_a_new_one() -> None:
    """One thread for three slots 50 ms apart and requests of 120 ms: sent at their booked
    slots, the second and third would go late, into slots others may hold. They book new
    ones instead, so no two requests ever start closer than the interval."""
    booked_again: list[float] = []

    class Counting(LocalRateLimiter):
        def reserve(self) -> float:
            booked_again.append(super().reserve())
            return booked_again[-1]

    limiter = Counting(0.05)
    started: list[float] = []

    def request() -> str:
        started.append(time.monotonic())
        time.sleep(0.12)
        return "task"

    waits = limiter.reserve_many(3)
    answers = in_slots(limiter, Fanout(1), _sleep, [request] * 3, waits)
    assert answers == ["task"] * 3
    assert min(b - a for a, b in pairwise(started)) >= 0.05 - 0.005
    assert len(booked_again) == 2  # the first went in its slot


def test_a_429_stops_the_rest_of_the_group_unsent() -> None:
    limiter = LocalRateLimiter(0.0)
    sent: list[int] = []
    lock = threading.Lock()

    def request(n: int) -> str:
        with lock:
            sent.append(n)
        if n == 0:
            raise ProviderError(ErrorKind.RATE_LIMITED, "slow down", 429)
        return f"task {n}"

    calls = [lambda n=n: request(n) for n in range(4)]
    answers = in_slots(limiter, Fanout(1), _sleep, calls, limiter.reserve_many(4))
    assert isinstance(answers[0], ProviderError)
    assert answers[1:] == [None, None, None]  # not sent: their rows go back, no attempt
    assert sent == [0]
    assert limiter.reserve() > 1.0  # everyone cools down


def test_a_fanout_sends_its_group_at_once() -> None:
    arrived = threading.Barrier(4, timeout=5)  # breaks unless all four are in flight at once

    def request() -> int:
        return arrived.wait()

    fanout = Fanout(4)
    try:
        assert sorted(fanout.map([request] * 4)) == [0, 1, 2, 3]
    finally:
        fanout.close()


def _sleep(seconds: float) -> bool:
    if seconds > 0:
        time.sleep(seconds)
    return True


def test_a_group_whose_prices_do_not_all_fit_sends_those_that_do(engine: Engine) -> None:
    """A budget with room for three of five: the five together do not fit, so the rows are
    held one by one; three go, the fourth pauses the batch, nothing of the fifth is held."""
    ids = queued(engine, 5, "b")
    prices = Spending({"veo3.1": 250_000})
    now = transitions.utcnow()
    with engine.begin() as conn:
        batch_id = conn.execute(sa.select(Job.batch_id).where(Job.id == ids[0])).scalar_one()
        transitions.set_budget(conn, batch_id, 750_000)
        claimed = transitions.claim_rows(conn, ids, now, timedelta(seconds=30))
        going, refused = spending.reserve_rows(conn, claimed, now, prices)
        committed = conn.execute(
            sa.select(Batch.committed_micros).where(Batch.id == batch_id)
        ).scalar_one()
        held = dict(conn.execute(sa.select(Job.id, Job.held_micros)).all())
    assert [job.id for job in going] == ids[:3]
    assert [b for b, _ in refused] == [batch_id]
    assert refused[0][1].startswith("budget: the next row")
    assert committed == 750_000
    assert [held[i] for i in ids] == [250_000] * 3 + [0, 0]


def failing_claims(monkeypatch: pytest.MonkeyPatch, *errors: BaseException | None) -> None:
    """The claims of `submit_rows` raise `errors` in turn (None: that one goes through)."""
    real = routes.route_claimed
    planned = list(errors)

    def route(*args: Any, **kwargs: Any) -> Any:
        error = planned.pop(0) if planned else None
        if error is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(submit_module, "route_claimed", route)


def test_a_claim_the_database_refuses_leaves_the_last_waves_tasks_recorded(
    engine: Engine, mock: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = queued(engine, 6, "b")
    refused = sa.exc.IntegrityError("UPDATE jobs", {}, Exception("refused"))
    failing_claims(monkeypatch, None, refused)  # the first wave goes, the second is refused
    with pytest.raises(sa.exc.IntegrityError):
        submit(engine, mock, ids, Fanout(3))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Job.status, Job.task_id).order_by(Job.id)).all()
    assert [(status, task is not None) for status, task in rows[:3]] == [("submitted", True)] * 3
    assert mock.stats()["created"] == 3


def test_a_claim_that_lost_a_race_for_a_lock_is_made_again(
    engine: Engine, mock: MockProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = queued(engine, 6, "b")
    deadlock = sa.exc.OperationalError("SELECT accounts", {}, Exception("deadlock detected"))
    failing_claims(monkeypatch, None, deadlock)
    outcomes = submit(engine, mock, ids, Fanout(3))
    assert [o.status for o in outcomes] == ["submitted"] * 6
    assert set(mock.stats()["created_by_prompt"].values()) == {1}
