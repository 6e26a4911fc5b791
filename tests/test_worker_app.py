"""The Celery app that `celery -A worker worker` and `veo-batch worker` load."""

from __future__ import annotations

import worker
from worker.app import SUBMIT_TASK, VISIBILITY_TIMEOUT


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
