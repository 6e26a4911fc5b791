"""Thin tasks: each opens nothing of its own and calls a plain function."""

from __future__ import annotations

from celery import shared_task

from veobatch.services import services
from veobatch.submit import submit_one
from worker.app import SUBMIT_TASK


@shared_task(name=SUBMIT_TASK)  # type: ignore[untyped-decorator]
def submit(job_id: int) -> str | None:
    """Claim row `job_id`, wait for a rate slot, POST it, record the outcome."""
    held = services()
    outcome = submit_one(held.engine, held.client, held.limiter, job_id, lease=held.lease)
    return outcome.status.value if outcome else None
