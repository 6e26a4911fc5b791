"""The Celery application, configured from `VEO_*` settings."""

from __future__ import annotations

import os
from typing import Final

from celery import Celery
from kombu.entity import Queue

from veobatch.settings import Settings

SUBMIT_TASK: Final = "veobatch.submit"
POLL_TASK: Final = "veobatch.poll"
DOWNLOAD_TASK: Final = "veobatch.download"
ENQUEUE_TASK: Final = "veobatch.enqueue"  # for other systems: add jobs to a batch
SUBMIT_QUEUE: Final = "celery"
# Polls and downloads have queues of their own: the scheduler counts the submissions waiting
# to find lost messages, and the polls and downloads waiting to pace them.
POLL_QUEUE: Final = "veo-batch.poll"
DOWNLOAD_QUEUE: Final = "veo-batch.download"
# Longer than any task can run (a request, its rate wait, its retries are rows, not tasks):
# Redis hands a message to another worker only if it was not acknowledged in this time.
VISIBILITY_TIMEOUT: Final = 3600


def make_app(settings: Settings) -> Celery:
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    # The backend keeps the answers of `veobatch.enqueue` (every other task ignores its result).
    app = Celery("veo-batch", broker=broker, backend=broker)
    app.conf.update(
        task_acks_late=True,  # acknowledged when done: a killed worker's message comes back
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one message at a time
        task_ignore_result=True,  # outcomes go to the database
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_queues=[
            Queue(name)  # type: ignore[no-untyped-call]  # kombu has no annotations
            for name in (SUBMIT_QUEUE, POLL_QUEUE, DOWNLOAD_QUEUE)
        ],
        task_default_queue=SUBMIT_QUEUE,  # a worker takes from every queue above
        task_routes={POLL_TASK: {"queue": POLL_QUEUE}, DOWNLOAD_TASK: {"queue": DOWNLOAD_QUEUE}},
    )
    app.autodiscover_tasks(["worker"], related_name="tasks", force=True)
    return app


app = make_app(Settings.from_env(os.environ))
