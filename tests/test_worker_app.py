"""The Celery app that `celery -A worker worker` and `veo-batch worker` load."""

from __future__ import annotations

import redis

import worker
from tests.conftest import REDIS_URL
from veobatch.settings import Settings
from worker.app import VISIBILITY_TIMEOUT, make_app
from worker.names import (
    DOWNLOAD_QUEUE,
    ENQUEUE_TASK,
    INTAKE_QUEUE,
    POLL_QUEUE,
    POLL_TASK,
    QUEUES,
    SUBMIT_QUEUE,
    SUBMIT_TASK,
)


def test_the_submit_task_is_registered_under_its_stable_name() -> None:
    assert SUBMIT_TASK == "veobatch.submit"
    assert SUBMIT_TASK in worker.app.tasks


def test_messages_are_acknowledged_late_one_at_a_time() -> None:
    conf = worker.app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT
    assert VISIBILITY_TIMEOUT > 600  # longer than any task: a request plus its rate wait


def test_a_message_published_to_the_celery_exchange_reaches_one_queue(
    redis_client: redis.Redis,
) -> None:
    app = make_app(Settings.from_values({"redis_url": REDIS_URL}))
    with app.connection_for_write() as conn:  # the queues and bindings, as a worker declares
        for queue in app.amqp.queues.values():
            queue.bind(conn.default_channel).declare()
    app.send_task(ENQUEUE_TASK, args=["b", []], exchange="celery", routing_key="celery")
    app.send_task(ENQUEUE_TASK, args=["b", []])  # routed as our own code sends it
    app.send_task(POLL_TASK, args=[[1]])
    assert {queue: redis_client.llen(queue) for queue in QUEUES} == {
        SUBMIT_QUEUE: 1,
        POLL_QUEUE: 1,
        DOWNLOAD_QUEUE: 0,
        INTAKE_QUEUE: 1,
    }
