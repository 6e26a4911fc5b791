"""Thin tasks: each takes what its process holds and calls one plain function."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from celery import shared_task

from veobatch.errors import InvalidJobs, VeoBatchError
from veobatch.lifecycle.download import download_one
from veobatch.lifecycle.poll import poll_rows
from veobatch.lifecycle.submit import submit_rows
from veobatch.process import worker_process, worker_service
from veobatch.worker.hooks import stoppable_wait
from veobatch.worker.names import DOWNLOAD_TASK, ENQUEUE_TASK, POLL_TASK, SUBMIT_TASK


@shared_task(name=SUBMIT_TASK)  # type: ignore[untyped-decorator]
def submit(job_ids: list[int] | int) -> int:
    """Claim a group of queued rows, a wave at a time, POST each in its rate slot, record the
    outcomes; how many were sent. (One row id, as older schedulers sent, is a group of one.)"""
    held = worker_process()
    group = [job_ids] if isinstance(job_ids, int) else job_ids
    outcomes = submit_rows(held.engine, held.sender, group, fanout=held.fanout, wait=stoppable_wait)
    return len(outcomes)


@shared_task(name=POLL_TASK)  # type: ignore[untyped-decorator]
def poll(job_ids: list[int]) -> int:
    """Poll a group of submitted rows, each in its rate slot; how many were polled."""
    held = worker_process()
    outcomes = poll_rows(held.engine, held.sender, job_ids, wait=stoppable_wait)
    return len(outcomes)


@shared_task(name=DOWNLOAD_TASK)  # type: ignore[untyped-decorator]
def download(job_id: int) -> bool:
    """Fetch a succeeded row's video into VEO_DOWNLOAD_DIR (of this worker's host)."""
    held = worker_process()
    if held.settings.download_dir is None:
        return False  # the scheduler wants downloads, this worker was not told where
    return download_one(
        held.engine,
        held.videos,
        job_id,
        Path(held.settings.download_dir),
        deadline=held.settings.download_timeout,
        max_bytes=int(held.settings.video_max_mb * 1024 * 1024),
    )


@shared_task(name=ENQUEUE_TASK, ignore_result=False)  # type: ignore[untyped-decorator]
def enqueue(
    batch: str, jobs: list[dict[str, Any]], webhook_url: str | None = None
) -> dict[str, Any]:
    """Add `jobs` to `batch` (made if new) from any Celery client, in any language:
    `send_task("veobatch.enqueue", args=[batch, jobs])`. The same checks as files; a job's
    `external_id` (or `id`) makes a re-send add nothing. Answers what was stored, or the
    problems (then nothing was stored). Needs the database only, not the provider's key."""
    try:
        intake = worker_service().add(batch, jobs, webhook_url=webhook_url)
    except InvalidJobs as invalid:
        return {"ok": False, "batch": batch, "problems": invalid.problems}
    except VeoBatchError as refused:  # a bad batch name or webhook URL
        return {"ok": False, "batch": batch, "problems": [], "error": str(refused)}
    return {"ok": True, **asdict(intake)}
