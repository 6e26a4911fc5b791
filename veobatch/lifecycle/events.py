"""What the engine says as rows change: one log line and one count per change, made after the
change is committed (a rolled-back change says nothing).

Each line names the batch, the row (its id in the job file), the status it moved to, the
task id, the attempt, the HTTP status and the error kind, as fields a log search can use
(`veobatch.logs`). A change with an error is a warning; the rest are info.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection

from veobatch.lifecycle.poll_rules import PollOutcome
from veobatch.lifecycle.submit_rules import Outcome
from veobatch.metrics import count_row_change
from veobatch.states import JobStatus
from veobatch.store.tables import Batch
from veobatch.visible import shown

log = logging.getLogger("veobatch.rows")
MAX_ERROR: Final = 300  # characters of an error in a log line
_names: dict[tuple[str, int], str] = {}  # (database, batch id) -> name: names never change


def batch_name(conn: Connection, batch_id: int) -> str:
    """The batch's name, looked up once per process."""
    key = (str(conn.engine.url), batch_id)
    if key not in _names:  # read on a connection of its own: `conn` is between transactions
        with conn.engine.connect() as own:
            found = own.execute(sa.select(Batch.name).where(Batch.id == batch_id)).scalar()
        _names[key] = found if found is not None else str(batch_id)
    return _names[key]


def submitted(conn: Connection, job: sa.Row[Any], outcome: Outcome) -> None:
    """A submission's outcome was recorded for row `job` (as claimed)."""
    attempt = job.attempts + (1 if outcome.counts_as_attempt else 0)
    what = {
        JobStatus.SUBMITTED: "submitted",
        JobStatus.PENDING: "back to pending",
        JobStatus.FAILED: "failed",
        JobStatus.IN_DOUBT: "in doubt (the answer was lost: a task may exist)",
    }.get(outcome.status, str(outcome.status))
    _changed(
        conn,
        job,
        outcome.status,
        f"submit: {what}",
        task_id=outcome.task_id,
        attempt=attempt,
        http_status=outcome.http_status,
        error_kind=outcome.error_kind,
        error=outcome.error,
    )
    if outcome.pause_reason:
        paused(conn, job.batch_id, outcome.pause_reason)


def task_arrived(batch: str, job: sa.Row[Any], task_id: str, account: str) -> None:
    """The relay answered row `job`'s POST with `task_id`: said before it is recorded, so
    an operator can always match the relay's tasks with the rows."""
    log.info(
        "submit: task created",
        extra={
            "batch": batch,
            "row": job.ref,
            "account": account,
            "status": JobStatus.SUBMITTING.value,  # (until recorded)
            "task_id": shown(task_id),
            "attempt": job.attempts + 1,
        },
    )


def paused(conn: Connection, batch_id: int, reason: str) -> None:
    """A submission paused the batch (its answer, its budget, the daily cap)."""
    log.warning("batch paused: %s", reason, extra={"batch": batch_name(conn, batch_id)})


def polled(conn: Connection, job: sa.Row[Any], outcome: PollOutcome) -> None:
    """A poll's outcome was recorded for row `job`: a line when it changed something."""
    if not outcome.changed and not outcome.error_kind:
        return
    if outcome.finished:
        what = "succeeded" if outcome.status is JobStatus.SUCCEEDED else str(outcome.status)
    elif outcome.fallback is not None:
        what = f"filtered, to be sent again with {outcome.fallback}"
    else:
        what = f"generating ({outcome.remote_status or '?'}{_progress(outcome.progress)})"
    _changed(
        conn,
        job,
        outcome.status,
        f"poll: {what}",
        task_id=job.task_id,
        attempt=job.attempts,
        http_status=outcome.http_status,
        error_kind=outcome.error_kind,
        error=outcome.error,
        count=outcome.finished,
    )


def downloaded(job: Any, error: str | None) -> None:
    """A download of row `job`'s video (with its `batch` name) ended, on disk or with `error`."""
    message = f"download failed: {error[:MAX_ERROR]}" if error else "download: video saved"
    extra = {
        "batch": job.batch,
        "row": job.ref,
        "task_id": job.task_id,
        "error_kind": "download" if error else None,
    }
    (log.warning if error else log.info)(message, extra=extra)


def _changed(
    conn: Connection,
    job: sa.Row[Any],
    status: JobStatus,
    message: str,
    *,
    task_id: str | None,
    attempt: int,
    http_status: int | None,
    error_kind: str | None,
    error: str | None,
    count: bool = True,
) -> None:
    if count:
        count_row_change(status.value)
    text = f"{message}: {error[:MAX_ERROR]}" if error else message
    extra = {
        "batch": batch_name(conn, job.batch_id),
        "row": job.ref,
        "status": status.value,
        "task_id": task_id,
        "attempt": attempt,
        "http_status": http_status,
        "error_kind": error_kind,
    }
    (log.warning if error_kind else log.info)(text, extra=extra)


def _progress(progress: str | None) -> str:
    return f" {progress}" if progress else ""
