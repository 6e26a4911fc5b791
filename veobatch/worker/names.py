"""The names a client, the scheduler and the workers agree on: tasks and their queues."""

from __future__ import annotations

from typing import Final

SUBMIT_TASK: Final = "veobatch.submit"
POLL_TASK: Final = "veobatch.poll"
DOWNLOAD_TASK: Final = "veobatch.download"
ENQUEUE_TASK: Final = "veobatch.enqueue"  # for other systems: add jobs to a batch
SUBMIT_QUEUE: Final = "celery"
# Polls and downloads have queues of their own: the scheduler counts the submissions waiting
# to find lost messages, and the polls and downloads waiting to pace them. Intake has its own
# so that a flood of jobs from other systems never holds up the submissions.
POLL_QUEUE: Final = "veo-batch.poll"
DOWNLOAD_QUEUE: Final = "veo-batch.download"
INTAKE_QUEUE: Final = "veo-batch.intake"
QUEUES: Final = (SUBMIT_QUEUE, POLL_QUEUE, DOWNLOAD_QUEUE, INTAKE_QUEUE)
