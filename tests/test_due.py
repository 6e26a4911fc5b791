"""What is due, decided once for the scheduler and for `veo-batch run` (`lifecycle.due`)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.helpers import load_prompts
from veobatch.lifecycle import transitions
from veobatch.lifecycle.due import Queue, Rules, Wanted, due_work, room
from veobatch.states import BatchState, JobStatus
from veobatch.store.tables import Batch, Job

RULES = Rules(poll_claim=timedelta(minutes=1))


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Job.status, sa.func.count()).group_by(Job.status)).all()
    return {str(status): count for status, count in rows}


def test_a_queue_is_topped_up_once_a_quarter_of_it_has_gone() -> None:
    queue = Queue(depth=100, group=10, in_messages=0)
    assert room(queue, 80) == 0  # 20 free: less than a quarter
    assert room(queue, 75) == 25
    assert room(queue, 0) == 100
    assert room(Queue(depth=8, group=4, in_messages=0), 5) == 0  # less than a group


def test_rows_whose_messages_were_lost_are_released_again_in_the_same_round(
    engine: Engine,
) -> None:
    load_prompts(engine, [f"row {n}" for n in range(12)])
    an_hour_ago = transitions.utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        first = transitions.release(conn, an_hour_ago, 6)
        conn.execute(sa.update(Job).where(Job.id.in_(first)).values(updated_at=an_hour_ago))
    wanted = Wanted(queue=Queue(depth=10, group=2, in_messages=2), expire=True)
    with engine.begin() as conn:
        due = due_work(conn, transitions.utcnow(), wanted, RULES)
    # Six queued, their messages name two: four were lost, pending again, and the queue is
    # topped up to its depth from every pending row (the lost ones among them).
    assert due.requeued == 4
    assert len(due.submits) == 10 - 2
    assert due.queued == 10
    assert statuses(engine) == {"queued": 10, "pending": 2}


def test_a_lane_and_the_scheduler_release_under_the_same_cap(engine: Engine) -> None:
    batch = load_prompts(engine, [f"row {n}" for n in range(10)])
    capped = Rules(poll_claim=timedelta(minutes=1), max_in_flight=3)
    with engine.begin() as conn:
        wave = due_work(conn, transitions.utcnow(), Wanted(submits=8), capped, [batch])
    assert len(wave.submits) == 3
    with engine.begin() as conn:
        more = Wanted(queue=Queue(depth=20, group=1, in_messages=3))
        assert due_work(conn, transitions.utcnow(), more, capped).submits == []


def test_leases_run_out_and_finished_batches_are_seen_only_when_asked(engine: Engine) -> None:
    batch = load_prompts(engine, ["one"])
    long_ago = transitions.utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(sa.update(Job).values(status=JobStatus.SUBMITTING, lease_until=long_ago))
    with engine.begin() as conn:
        assert due_work(conn, transitions.utcnow(), Wanted(), RULES, [batch]).expired == 0
    assert statuses(engine) == {"submitting": 1}
    with engine.begin() as conn:
        due = due_work(conn, transitions.utcnow(), Wanted(expire=True), RULES, [batch])
    assert due.expired == 1
    assert not due  # nothing to hand out
    with engine.begin() as conn:
        conn.execute(sa.update(Job).values(status=JobStatus.FAILED))
        due_work(conn, transitions.utcnow(), Wanted(finish=True), RULES)
    with engine.connect() as conn:
        state = conn.execute(sa.select(Batch.state).where(Batch.id == batch)).scalar_one()
    assert state == BatchState.FINISHED
