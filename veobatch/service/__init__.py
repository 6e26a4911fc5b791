"""The service: every operation a person or a system can ask for, one method each.

    intake   add (a list of jobs), load (a job file), upload (a file or a zip), load_archive
    reading  batches, status, jobs, count, job (with its history), iter_jobs, export, watch,
             activity, overview, estimate, video_file, image_entry, image_bytes
    changes  rerun (refused for paid rows unless confirmed), review, set_budget, pause,
             resume, cancel, set_webhook, retry_downloads, finish_batches, deliver_webhooks
    accounts accounts, account, pause_account, resume_account

The command line, the HTTP API, the dashboard, the Celery task `veobatch.enqueue` and the
Python API (`veobatch.Client`, which is this class opened from a URL) all call these methods: a
face only parses its input and formats the answer. Errors are the typed ones of
`veobatch.errors`; each face maps them to its exit codes or statuses in one table. The methods
live in three modules by what they do (`adding`, `reading`, `changes`), over `base`, which
holds the database, the settings and the operations the others build on; `BatchService` is
them together. Running a batch to its end is `veobatch.running.run_batch`.
"""

from __future__ import annotations

from veobatch.service.accounts import AccountOps
from veobatch.service.adding import MAX_JOBS_PER_CALL, Adding, Intake, refuse_invalid
from veobatch.service.changes import Changing, Rerun
from veobatch.service.reading import Activity, Reading

__all__ = [
    "MAX_JOBS_PER_CALL",
    "Activity",
    "BatchService",
    "Intake",
    "Rerun",
    "refuse_invalid",
]


class BatchService(Adding, Reading, Changing, AccountOps):
    """The operations on batches over one engine and one set of settings: intake
    (`service.adding`), reading (`service.reading`), changes (`service.changes`) and the
    relay accounts (`service.accounts`)."""
