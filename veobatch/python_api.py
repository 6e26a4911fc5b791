"""Queue and follow batches from Python, with the same checks and the same store as files.

    from veobatch import Client

    with Client("sqlite:///veo-batch.db") as veo:
        veo.add("products", [{"external_id": "sku-1", "prompt": "...", "model": "veo3.1",
                              "images": ["https://..."]}])
        print(veo.status("products").counts)

The rows are then sent by `veo-batch run` or by the workers (`veo-batch scheduler` and
`veo-batch worker`), which pick up every active batch. A job's `id` (or `external_id`) is its
key in the batch: adding it again adds nothing, so a caller may retry freely. A job without
one gets a fresh key, so adding it twice makes two rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch.engine import transitions
from veobatch.errors import BatchStateError, ExitCode, NotFoundError, VeoBatchError
from veobatch.intake.catalog import ImageRange
from veobatch.intake.job_spec import ID_ALIAS, RawJob
from veobatch.intake.loader import load_rows
from veobatch.intake.problems import Problem
from veobatch.settings import Settings
from veobatch.states import JobStatus
from veobatch.store import database
from veobatch.store.queries import (
    BatchSummary,
    attempts_of,
    batch_id,
    batch_summaries,
    count_jobs,
    select_jobs,
    stream_jobs,
    utc,
)

JOB_VIEW_FIELDS = (
    "ref", "status", "task_id", "error", "error_kind", "http_status", "attempts", "remote_status",
    "progress", "video_url", "video_path", "video_bytes", "video_sha256", "download_error",
    "prompt", "model", "images", "submitted_at", "finished_at",
)  # fmt: skip


class InvalidJobs(VeoBatchError):
    """Some jobs are invalid; nothing was stored. `problems` name each job by its index (from
    0, in the order given) and the field."""

    exit_code = ExitCode.INVALID_ROWS

    def __init__(self, problems: Sequence[Problem], more: int = 0) -> None:
        self.problems = [
            {"index": p.line, "field": p.field, "message": p.message} for p in problems
        ]  # fmt: skip
        lines = [
            f"job {p.line}: {p.field}: {p.message}" if p.field else f"job {p.line}: {p.message}"
            for p in problems
        ]
        if more:
            lines.append(f"... and {more} more problem(s)")
        super().__init__("invalid jobs, nothing stored:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Intake:
    """What `Client.add` did."""

    batch: str
    created: bool  # the batch is new
    added: int  # rows stored now
    already_there: int  # jobs whose id the batch had: nothing was added for them
    refs: list[str] = field(default_factory=list)  # each job's key, in the order given


class Client:
    """A handle on the veo-batch store (`VEO_DATABASE_URL` unless given)."""

    def __init__(self, database_url: str | None = None, *, settings: Settings | None = None):
        self.settings = settings or Settings.from_env(os.environ)
        url = database_url or self.settings.database_url
        self.engine = database.open_database(
            Settings.from_values({"database_url": url}).database_url
        )

    @classmethod
    def over(cls, engine: Engine, settings: Settings) -> Client:
        """A client on an engine someone else opened (the HTTP API's)."""
        client = cls.__new__(cls)
        client.engine, client.settings = engine, settings
        return client

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ intake

    def add(
        self,
        batch: str,
        jobs: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
    ) -> Intake:
        """Check every job and store them in `batch` (made if new), in one transaction: one
        invalid job and nothing is stored (`InvalidJobs` says which and why). Jobs without an
        id are keyed by `idempotency_key` and their place in `jobs` when it is given, so the
        same call made again adds nothing. `webhook_url` is told (a signed JSON POST) when
        the batch finishes or pauses."""
        return add_jobs(
            self.engine, self.settings.models, batch, jobs, idempotency_key, webhook_url
        )

    # ------------------------------------------------------------------ reading

    def batches(self) -> list[BatchSummary]:
        """Every batch, oldest first, with its counts per status."""
        with self.engine.connect() as conn:
            return batch_summaries(conn)

    def status(self, batch: str) -> BatchSummary:
        """One batch: its state, why it is paused, its counts per status."""
        with self.engine.connect() as conn:
            return batch_summaries(conn, batch)[0]

    def jobs(
        self,
        batch: str,
        *,
        statuses: Sequence[str] = (),
        kinds: Sequence[str] = (),
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """A page of the batch's rows (in the order they were added), as plain dicts."""
        with self.engine.connect() as conn:
            query = select_jobs(batch_id(conn, batch), statuses, kinds)
            return [job_view(row) for row in stream_jobs(conn, query.limit(limit).offset(offset))]

    def count(self, batch: str, *, statuses: Sequence[str] = (), kinds: Sequence[str] = ()) -> int:
        """How many rows `jobs` pages through."""
        with self.engine.connect() as conn:
            return count_jobs(conn, select_jobs(batch_id(conn, batch), statuses, kinds))

    def job(self, batch: str, ref: str) -> dict[str, Any]:
        """One row with its whole history (each submission, poll and download)."""
        with self.engine.connect() as conn:
            query = select_jobs(batch_id(conn, batch), refs=[ref])
            row = conn.execute(query).first()
            if row is None:
                raise NotFoundError(f"batch {batch!r} has no job {ref!r}")
            view = job_view(row)
            view["history"] = [
                {"at": utc(a.at), "action": a.action, "http_status": a.http_status,
                 "task_id": a.task_id, "remote_status": a.remote_status, "error": a.error,
                 "error_kind": a.error_kind}
                for _, a in attempts_of(conn, query)
            ]  # fmt: skip
        return view

    def iter_jobs(self, batch: str) -> Iterator[dict[str, Any]]:
        """Every row of the batch, streamed."""
        with self.engine.connect() as conn:
            query = select_jobs(batch_id(conn, batch))
            for row in stream_jobs(conn, query):
                yield job_view(row)

    # ------------------------------------------------------------------ changes

    def rerun(
        self, batch: str, statuses: Sequence[str] = (JobStatus.FAILED,), kinds: Sequence[str] = ()
    ) -> tuple[int, int]:
        """Rows back to work: (rows to send again as new tasks, timed-out rows whose task is
        polled again). Sending a row that has a task pays again: choose statuses with care."""
        deadline = timedelta(seconds=self.settings.poll_deadline)
        with self.engine.begin() as conn:
            bid = batch_id(conn, batch)
            now = transitions.utcnow()
            counts = transitions.rerun(conn, bid, now, statuses, kinds, deadline=deadline)
            transitions.reopen(conn, bid, now)
        return counts

    def pause(self, batch: str, reason: str = "paused from Python") -> None:
        self._change(batch, lambda conn, bid, now: transitions.pause(conn, bid, reason, now))

    def resume(self, batch: str) -> None:
        self._change(batch, transitions.resume)

    def cancel(self, batch: str) -> int:
        """Cancel the batch; the number of rows that will not be sent."""
        with self.engine.begin() as conn:
            return transitions.cancel(conn, batch_id(conn, batch), transitions.utcnow())

    def _change(self, batch: str, change: Any) -> None:
        with self.engine.begin() as conn:
            if not change(conn, batch_id(conn, batch), transitions.utcnow()):
                raise BatchStateError(f"batch {batch!r} is not in a state that allows this")


def check_batch_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > 200:
        raise VeoBatchError("a batch name is 1 to 200 characters, without spaces around it")
    return name


def add_jobs(
    engine: Engine,
    models: Mapping[str, ImageRange],
    batch: str,
    jobs: Iterable[Any],
    idempotency_key: str | None = None,
    webhook_url: str | None = None,
) -> Intake:
    """`Client.add`, for callers that hold an engine (the Celery task, the HTTP API)."""
    check_batch_name(batch)
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise VeoBatchError(f"webhook_url: {webhook_url[:100]!r} is not an http(s) URL")
    keyed = [_with_key(index, job, idempotency_key) for index, job in enumerate(jobs)]
    rows = (RawJob.from_mapping(index, job) for index, job in enumerate(keyed))
    result = load_rows(
        engine, rows, batch=batch, source="python", models=models, reader_process=False
    )
    if result.rejected:
        report = result.report
        raise InvalidJobs(report.problems, report.total - len(report.problems))
    if webhook_url is not None:
        with engine.begin() as conn:
            transitions.set_webhook(conn, batch_id(conn, batch), webhook_url)
    refs = [str(job.get("id") or job.get(ID_ALIAS)) for job in keyed]
    return Intake(batch, result.created, result.stored, result.already_present, refs)


def _with_key(index: int, job: Mapping[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """The job with a key: its own id; else, with an idempotency key for the whole request,
    that key and the job's place in it (so the same request sent again adds nothing); else
    a fresh one (then a retry makes a second row)."""
    if not isinstance(job, Mapping):
        kind = type(job).__name__
        raise InvalidJobs([Problem(index, None, f"a job is a mapping of fields, not {kind}")])
    keyed = dict(job)
    if keyed.get("id") in (None, "") and keyed.get(ID_ALIAS) in (None, ""):
        keyed["id"] = f"{idempotency_key}:{index}" if idempotency_key else uuid.uuid4().hex[:16]
    return keyed


def job_view(row: sa.Row[Any]) -> dict[str, Any]:
    view = {name: getattr(row, name) for name in JOB_VIEW_FIELDS}
    view["id"] = view.pop("ref")
    for name in ("submitted_at", "finished_at"):
        view[name] = utc(view[name])
    return view
