"""The Celery application, configured from `VEO_*` settings."""

from __future__ import annotations

import os
from typing import Final

from celery import Celery, Task
from kombu.entity import Exchange, Queue

from veobatch.settings import Settings
from veobatch.worker import hooks
from veobatch.worker.names import (
    DOWNLOAD_QUEUE,
    DOWNLOAD_TASK,
    ENQUEUE_TASK,
    INTAKE_QUEUE,
    POLL_QUEUE,
    POLL_TASK,
    QUEUES,
    SUBMIT_QUEUE,
)

__all__ = ["VISIBILITY_TIMEOUT", "GuardedTask", "app", "make_app"]

# Longer than any task can run (a request, its rate wait, its retries are rows, not tasks):
# Redis hands a message to another worker only if it was not acknowledged in this time.
VISIBILITY_TIMEOUT: Final = 3600


class GuardedTask(Task):  # type: ignore[misc]  # celery has no annotations
    """Our tasks: every message is checked before it runs (see `veobatch.worker.guard`)."""

    Strategy = "veobatch.worker.guard:guarded_strategy"


def make_app(settings: Settings) -> Celery:
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    # The backend keeps the answers of `veobatch.enqueue` (every other task ignores its result).
    app = Celery("veo-batch", broker=broker, backend=broker, task_cls=GuardedTask)
    app.conf.update(
        task_acks_late=True,  # acknowledged when done: a killed worker's message comes back
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one message at a time
        task_ignore_result=True,  # outcomes go to the database
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # Each queue has an exchange and a routing key of its own: a message is delivered to
        # one queue, once, however a client publishes it.
        task_queues=[
            Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
            for name in QUEUES
        ],
        task_default_queue=SUBMIT_QUEUE,  # a worker takes from every queue above
        task_default_exchange=SUBMIT_QUEUE,
        task_default_routing_key=SUBMIT_QUEUE,
        task_routes={
            POLL_TASK: {"queue": POLL_QUEUE},
            DOWNLOAD_TASK: {"queue": DOWNLOAD_QUEUE},
            ENQUEUE_TASK: {"queue": INTAKE_QUEUE},
        },
    )
    app.autodiscover_tasks(["veobatch.worker"], related_name="tasks", force=True)
    hooks.install(settings)
    return app


app = make_app(Settings.from_env(os.environ))
