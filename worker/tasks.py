"""Thin tasks: each opens nothing of its own and calls a plain function."""

from __future__ import annotations

from pathlib import Path

from celery import shared_task

from veobatch.download import download_one
from veobatch.poll import poll_rows
from veobatch.services import services
from veobatch.submit import submit_one
from worker.app import DOWNLOAD_TASK, POLL_TASK, SUBMIT_TASK


@shared_task(name=SUBMIT_TASK)  # type: ignore[untyped-decorator]
def submit(job_id: int) -> str | None:
    """Claim row `job_id`, wait for a rate slot, POST it, record the outcome."""
    held = services()
    outcome = submit_one(
        held.engine, held.client, held.limiter, job_id, lease=held.lease, pacing=held.pacing
    )
    return outcome.status.value if outcome else None


@shared_task(name=POLL_TASK)  # type: ignore[untyped-decorator]
def poll(job_ids: list[int]) -> int:
    """Poll a group of submitted rows, each in its rate slot; how many were polled."""
    held = services()
    return len(poll_rows(held.engine, held.client, held.poll_limiter, job_ids,
                         pacing=held.pacing))  # fmt: skip


@shared_task(name=DOWNLOAD_TASK)  # type: ignore[untyped-decorator]
def download(job_id: int) -> bool:
    """Fetch a succeeded row's video into VEO_DOWNLOAD_DIR (of this worker's host)."""
    held = services()
    if held.settings.download_dir is None:
        return False  # the scheduler wants downloads, this worker was not told where
    return download_one(held.engine, held.videos, job_id, Path(held.settings.download_dir))
