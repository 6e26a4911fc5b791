"""The Celery app that `celery -A veobatch.worker worker` and `veo-batch worker` load."""

from __future__ import annotations

import pytest
import redis
from kombu.message import Message

import veobatch.worker
from tests.conftest import REDIS_URL
from veobatch.settings import Settings
from veobatch.worker.app import VISIBILITY_TIMEOUT, make_app
from veobatch.worker.guard import Refused, check
from veobatch.worker.names import (
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
    assert SUBMIT_TASK in veobatch.worker.app.tasks


def test_messages_are_acknowledged_late_one_at_a_time() -> None:
    conf = veobatch.worker.app.conf
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


def message(body: str) -> Message:
    return Message(body=body, content_type="application/json", content_encoding="utf-8")  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("task", "body", "reason"),
    [
        (SUBMIT_TASK, '{"a": 1}', "not a task message"),
        (SUBMIT_TASK, '[["7"], {}, {}]', "job_ids must be a list of 1 to 1000 row ids"),
        (SUBMIT_TASK, '[[[1, "7"]], {}, {}]', "each of job_ids must be a positive whole"),
        (SUBMIT_TASK, "[[0], {}, {}]", "job_id must be a positive whole number"),
        (SUBMIT_TASK, "[[[]], {}, {}]", "job_ids must be a list of 1 to 1000"),
        (SUBMIT_TASK, "[[1, 2], {}, {}]", "do not fit the task"),
        (POLL_TASK, "[[[]], {}, {}]", "job_ids must be a list of 1 to 1000"),
        (ENQUEUE_TASK, '[["b", {}], {}, {}]', "jobs must be a list"),
        (ENQUEUE_TASK, "[[" + "[" * 40 + "]" * 40 + "], {}, {}]", "nested more than 32 deep"),
        (SUBMIT_TASK, "not json", "cannot be decoded"),
    ],
)
def test_a_message_that_does_not_fit_its_task_is_refused(task: str, body: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        check(task, message(body))


def test_good_messages_and_celerys_own_tasks_pass() -> None:
    check(SUBMIT_TASK, message("[[[7, 8, 9]], {}, {}]"))
    check(SUBMIT_TASK, message("[[7], {}, {}]"))  # one row, as older schedulers sent
    check(POLL_TASK, message("[[[1, 2, 3]], {}, {}]"))
    check(ENQUEUE_TASK, message('[["b", [{"prompt": "x"}]], {"webhook_url": null}, {}]'))
    check("celery.chord_unlock", message('[["group-id"], {"interval": 1}, {}]'))
