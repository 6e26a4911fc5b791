"""The scheduler's lost-message check, against a real Redis and both databases: only submit
messages count, so polls being worked on never hide lost submissions."""

from __future__ import annotations

import json
from datetime import timedelta

import redis
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.conftest import REDIS_URL
from tests.helpers import load_prompts
from veobatch.lifecycle import transitions
from veobatch.scheduler.loop import UNACKED, Scheduler
from veobatch.settings import Settings
from veobatch.states import JobStatus
from veobatch.store.tables import Job
from veobatch.worker.app import make_app
from veobatch.worker.names import POLL_QUEUE, SUBMIT_QUEUE


def queued_long_ago(engine: Engine, count: int) -> None:
    """`count` rows queued a minute ago whose messages are gone (Redis lost them)."""
    load_prompts(engine, [f"row {n}" for n in range(count)])
    with engine.begin() as conn:
        conn.execute(
            sa.update(Job).values(
                status=JobStatus.QUEUED, updated_at=transitions.utcnow() - timedelta(minutes=1)
            )
        )


def being_worked_on(broker: redis.Redis, queue: str, count: int) -> None:
    """Messages of `queue` delivered and not acknowledged, as kombu's Redis transport keeps
    them: one hash for every queue, each value `[message, exchange, routing_key]`."""
    for n in range(count):
        broker.hset(UNACKED, f"{queue}-{n}", json.dumps([{"body": "..."}, queue, queue]))


def scheduler(engine: Engine, broker: redis.Redis) -> Scheduler:
    app = make_app(Settings.from_values({"redis_url": REDIS_URL}))
    return Scheduler(
        engine,
        broker,
        app,
        depth=20,
        tick=0.1,
        grace=timedelta(seconds=5),
        submit_group=1,
        poll_group=5,
        poll_claim=timedelta(minutes=2),
    )


def test_lost_submissions_are_found_while_polls_are_in_flight(
    engine: Engine, redis_client: redis.Redis
) -> None:
    queued_long_ago(engine, 3)
    being_worked_on(redis_client, POLL_QUEUE, 10)  # polls in flight: not submit messages
    sent = scheduler(engine, redis_client).tick_once()
    assert len(sent) == 3  # found lost, back to pending, and sent again
    assert redis_client.llen(SUBMIT_QUEUE) == 3


def test_submissions_being_worked_on_are_not_lost(
    engine: Engine, redis_client: redis.Redis
) -> None:
    queued_long_ago(engine, 3)
    being_worked_on(redis_client, SUBMIT_QUEUE, 3)
    assert scheduler(engine, redis_client).tick_once() == []
    assert redis_client.llen(SUBMIT_QUEUE) == 0
