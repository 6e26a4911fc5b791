"""The service: every operation a person or a system can ask for, one method each.

    intake   add (a list of jobs), load (a job file)
    reading  batches, status, jobs, count, job (with its history), iter_jobs, export, watch
    changes  rerun (with a dry-run count), pause, resume, cancel, set_webhook,
             deliver_webhooks

The command line, the HTTP API, the Celery task `veobatch.enqueue` and the Python API
(`veobatch.Client`, which is this class opened from a URL) all call these methods: a face only
parses its input and formats the answer. Errors are the typed ones of `veobatch.errors`; each
face maps them to its exit codes or statuses in one table.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from shlex import quote
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from veobatch import pricing
from veobatch.errors import (
    BatchStateError,
    DatabaseError,
    ImageError,
    InvalidJobs,
    NotFoundError,
    UnconfirmedRerun,
    VeoBatchError,
)
from veobatch.images.files import ImageInspector, ImageRules
from veobatch.images.sending import checked_bytes
from veobatch.intake.archive import is_zip, unpacked_zip
from veobatch.intake.job_spec import BAD_NAME_CHARS, ID_ALIAS, RawJob, text_problem
from veobatch.intake.loader import LoadResult, ReadProgress, load_rows
from veobatch.intake.problems import DEFAULT_MAX_PROBLEMS, Problem
from veobatch.intake.readers import JobFile, job_file_from_bytes
from veobatch.lifecycle import spend_rules, transitions, webhooks
from veobatch.lifecycle.poll_rules import Pacing
from veobatch.lifecycle.progress import Progress, follow
from veobatch.lifecycle.spend_rules import Estimate, Spending, unpriced
from veobatch.settings import Settings
from veobatch.states import OPEN, BatchState, JobStatus, Review
from veobatch.store import activity
from veobatch.store.activity import Series
from veobatch.store.export import (
    OUTPUT_COLUMNS,
    ExportText,
    image_file,
    image_name,
    output_value,
)
from veobatch.store.queries import (
    BatchSummary,
    RowFilter,
    attempts_of,
    batch_id,
    batch_summaries,
    count_jobs,
    error_kinds,
    model_counts,
    page_of,
    stream_jobs,
    utc,
)
from veobatch.store.tables import Job

MAX_BATCH_NAME: Final = 200
MAX_JOBS_PER_CALL: Final = 100_000  # one add from Python, HTTP or Celery
# A row as the faces show it: its input, then what the export adds (status, task, video...).
JOB_VIEW_FIELDS: Final = ("ref", "prompt", "model", "images", *OUTPUT_COLUMNS)


@dataclass(frozen=True)
class Intake:
    """What `add` did."""

    batch: str
    created: bool  # the batch is new
    added: int  # rows stored now
    already_there: int  # jobs whose id the batch had: nothing was added for them
    refs: list[str] = field(default_factory=list)  # each job's key, in the order given


@dataclass(frozen=True)
class Activity:
    """What a batch has been doing (the dashboard's batch page)."""

    batch: BatchSummary  # its state, counts and money (without `error_kinds`)
    per_minute: int  # rows that ended in the last minute
    eta_seconds: float | None  # at that pace, until no row is left open
    reasons: list[tuple[str, str, int]]  # the top (error kind, error, rows)
    series: Series  # rows sent and finished over time
    generation: list[tuple[int, int]]  # (seconds to the video, rows)


@dataclass(frozen=True)
class Rerun:
    """What a rerun matched and did (with `dry_run`, only `matched` and `paid_for`)."""

    matched: int  # rows in the chosen statuses and kinds
    paid_for: list[str]  # chosen statuses whose rows have (or may have) a paid task
    paid_rows: int = 0  # with `dry_run`: the matched rows in those statuses
    sent_again: int = 0  # rows back to pending: sent as new tasks
    polled_again: int = 0  # timed-out rows whose task is polled again
    state: str | None = None  # the batch's state afterwards
    adds: int | None = None  # with `dry_run`: what sending them again costs (None: unpriced)
    unpriced: list[str] = field(default_factory=list)  # their models that have no price


def check_batch_name(name: object) -> str:
    """A batch name: 1 to MAX_BATCH_NAME characters, no spaces around it, and one safe path
    segment (results and videos are written under it): no `/`, `\\`, `.` or `..`, no NUL
    or control character, no lone surrogate."""
    rule = (
        f"a batch name is 1 to {MAX_BATCH_NAME} characters, without spaces around it, "
        "slashes, or control characters"
    )
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise VeoBatchError(rule)
    if len(name) > MAX_BATCH_NAME or name in (".", "..") or "/" in name or "\\" in name:
        raise VeoBatchError(f"{rule}; not {name[:MAX_BATCH_NAME]!r}")
    if (problem := text_problem(name, BAD_NAME_CHARS)) is not None:
        raise VeoBatchError(f"batch name {name[:60]!r} {problem}; {rule}")
    return name


class BatchService:
    """The operations on batches over one engine and one set of settings."""

    def __init__(self, engine: Engine | None, settings: Settings) -> None:
        self._engine = engine  # None: only checks that need no database (a dry run)
        self.settings = settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise DatabaseError("this service was opened without a database")
        return self._engine

    # ------------------------------------------------------------------ intake

    def add(
        self,
        batch: str,
        jobs: Iterable[Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
        webhook_url: str | None = None,
        budget: object | None = None,
    ) -> Intake:
        """Check every job and store them in `batch` (made if new), in one transaction: one
        invalid job and nothing is stored (`InvalidJobs` says which and why). Jobs without an
        id are keyed by `idempotency_key` and their place in `jobs` when it is given, so the
        same call made again adds nothing. `webhook_url` is told (a signed JSON POST) when
        the batch finishes or pauses. `budget` (in VEO_CURRENCY) caps what the batch may
        spend; every model it uses must then have a price."""
        check_batch_name(batch)
        if webhook_url is not None:
            self._check_webhook(webhook_url)
        keyed = [_with_key(index, job, idempotency_key) for index, job in enumerate(jobs)]
        if len(keyed) > MAX_JOBS_PER_CALL:
            raise VeoBatchError(
                f"{len(keyed):,} jobs in one call; at most {MAX_JOBS_PER_CALL:,} (send the rest "
                "in another call, or load them as a file)"
            )
        rows = (RawJob.from_mapping(index, job) for index, job in enumerate(keyed))
        result = load_rows(
            self.engine,
            rows,
            batch=batch,
            source="python",
            models=self.settings.models,
            reader_process=False,
            **self._money_checks(budget),
        )
        if result.rejected:
            report = result.report
            raise InvalidJobs(report.problems, report.total - len(report.problems))
        if webhook_url is not None:
            self.set_webhook(batch, webhook_url)
        refs = [str(job.get("id") or job.get(ID_ALIAS)) for job in keyed]
        return Intake(batch, result.created, result.stored, result.already_present, refs)

    def load(
        self,
        job_file: JobFile,
        batch: str,
        *,
        source: str | None = None,
        skip_invalid: bool = False,
        dry_run: bool = False,
        max_problems: int = DEFAULT_MAX_PROBLEMS,
        webhook_url: str | None = None,
        progress: ReadProgress | None = None,
        reader_process: bool | None = None,
        budget: object | None = None,
        strict: bool = False,
    ) -> LoadResult:
        """Check every row of `job_file` and (unless `dry_run`) store them as `batch`. Invalid
        rows (without `skip_invalid`) store nothing: `result.rejected`, and `result.report`
        lists the problems by line; `refuse_invalid(result)` turns that into `InvalidJobs`.
        Local images are read from `job_file.images` (a file on this machine, or an unpacked
        zip); a job file that came as data has none, and a path in it is refused. `budget`
        as in `add`; `strict` refuses prompts mostly not in Latin script (else a warning)."""
        check_batch_name(batch)
        if webhook_url is not None:
            self._check_webhook(webhook_url)
        images = None
        if job_file.images is not None:
            images = ImageInspector(job_file.images, ImageRules.of(self.settings))
        result = load_rows(
            None if dry_run else self.engine,
            job_file.rows(),
            batch=batch,
            source=source or job_file.name,
            models=self.settings.models,
            skip_invalid=skip_invalid,
            dry_run=dry_run,
            max_problems=max_problems,
            progress=progress,
            position=job_file.position,
            reader_process=reader_process,
            images=images,
            strict=strict,
            **self._money_checks(budget),
        )
        if webhook_url is not None and not dry_run and not result.rejected:
            self.set_webhook(batch, webhook_url)
        return result

    def upload(
        self,
        filename: str,
        data: bytes,
        batch: str,
        *,
        format: str | None = None,
        budget: object | None = None,
    ) -> LoadResult:
        """Load an uploaded file (the HTTP API's, the dashboard's): a .zip of a job file and
        its images (`load_archive`), else a job file in `format` (default: its name's
        extension) whose images can only be links. Any invalid row and nothing is stored:
        `InvalidJobs` lists the problems by line."""
        if is_zip(filename, data[:4]):
            result = self.load_archive(filename, data, batch, budget=budget)
        else:
            job_file = job_file_from_bytes(filename, data, format)
            result = self.load(job_file, batch, reader_process=False, budget=budget)
        refuse_invalid(result)
        return result

    def load_archive(
        self,
        name: str,
        data: bytes,
        batch: str,
        *,
        skip_invalid: bool = False,
        dry_run: bool = False,
        webhook_url: str | None = None,
        budget: object | None = None,
    ) -> LoadResult:
        """`load` of the job file in zip `data`, its images named by their paths in the zip
        and kept under VEO_DATA_DIR (see `intake.archive` for what a zip may not hold)."""
        with unpacked_zip(name, data, Path(self.settings.data_dir)) as job_file:
            return self.load(
                job_file,
                batch,
                skip_invalid=skip_invalid,
                dry_run=dry_run,
                webhook_url=webhook_url,
                reader_process=False,
                budget=budget,
            )

    # ------------------------------------------------------------------ reading

    def batches(self) -> list[BatchSummary]:
        """Every batch, oldest first, with its counts per status."""
        with self.engine.connect() as conn:
            return batch_summaries(conn)

    def status(self, batch: str, *, errors: bool = True) -> BatchSummary:
        """One batch: its state, why it is paused, its counts per status and (unless not
        `errors`, which reads no row) its errors counted per kind."""
        with self.engine.connect() as conn:
            summary = batch_summaries(conn, batch)[0]
            if errors:
                summary.error_kinds = error_kinds(conn, summary.id)
        return summary

    def jobs(
        self,
        batch: str,
        *,
        statuses: Sequence[str] = (),
        kinds: Sequence[str] = (),
        refs: Sequence[str] = (),
        reviews: Sequence[str] = (),
        models: Sequence[str] = (),
        text: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """A page of the batch's rows (in the order they were added), as plain dicts;
        `limit=0` is every row from `offset` on. Filters as `store.queries.RowFilter`."""
        chosen = RowFilter(statuses, kinds, refs, reviews, models, text)
        with self.engine.connect() as conn:
            query = chosen.query(batch_id(conn, batch))
            page = page_of(query, limit, offset) if limit else query.offset(offset)
            return [job_view(row) for row in stream_jobs(conn, page)]

    def count(
        self,
        batch: str,
        *,
        statuses: Sequence[str] = (),
        kinds: Sequence[str] = (),
        refs: Sequence[str] = (),
        reviews: Sequence[str] = (),
        models: Sequence[str] = (),
        text: str | None = None,
    ) -> int:
        """How many rows `jobs` pages through."""
        chosen = RowFilter(statuses, kinds, refs, reviews, models, text)
        with self.engine.connect() as conn:
            return count_jobs(conn, chosen.query(batch_id(conn, batch)))

    def video_file(self, batch: str, ref: str) -> Path | None:
        """The row's downloaded video, if it is a file inside VEO_DOWNLOAD_DIR (a path in the
        row that points anywhere else is never served)."""
        folder = self.settings.download_dir
        with self.engine.connect() as conn:
            found = conn.execute(
                RowFilter(refs=[ref]).query(batch_id(conn, batch)).with_only_columns(Job.video_path)
            ).scalar()
        if not found or not folder:
            return None
        path, root = Path(found).resolve(), Path(folder).resolve()
        return path if path.is_relative_to(root) and path.is_file() else None

    def image_entry(self, batch: str, ref: str, index: int) -> Any:
        """Entry `index` of the row's stored `images` (NotFoundError past the end)."""
        with self.engine.connect() as conn:
            images = conn.execute(
                RowFilter(refs=[ref]).query(batch_id(conn, batch)).with_only_columns(Job.images)
            ).scalar()
        if images is None:
            raise NotFoundError(f"no row {ref!r} in batch {batch!r}")
        if not 0 <= index < len(images):
            raise NotFoundError(f"row {ref!r} has {len(images)} image(s)")
        return images[index]

    def image_bytes(self, batch: str, ref: str, index: int) -> bytes:
        """The bytes of the row's image `index`: a data: URI decoded, or a local file if it is
        still the one loaded (a link has none here: follow it)."""
        entry = self.image_entry(batch, ref, index)
        if isinstance(entry, str) and entry.startswith("data:"):
            try:
                return base64.b64decode(entry.partition(",")[2], validate=False)
            except (binascii.Error, ValueError):
                raise NotFoundError(f"image {index} of row {ref!r} is not base64") from None
        if not isinstance(entry, dict):
            raise NotFoundError(f"image {index} of row {ref!r} is a link, not stored here")
        try:
            return checked_bytes(entry)
        except ImageError as exc:
            raise NotFoundError(exc.message) from None

    def review(self, batch: str, refs: Sequence[str], verdict: str | None) -> int:
        """Mark the videos of rows `refs` approved or rejected (None: not reviewed); how many
        rows were marked. The mark is kept on the row, exported, and filters `jobs`."""
        if verdict is not None and verdict not in tuple(Review):
            raise VeoBatchError(f"review: {verdict!r} is not approved, rejected or none")
        with self.engine.begin() as conn:
            return transitions.set_review(
                conn, batch_id(conn, batch), refs, verdict, transitions.utcnow()
            )

    def job(self, batch: str, ref: str) -> dict[str, Any]:
        """One row with its whole history (each submission, poll and download)."""
        with self.engine.connect() as conn:
            query = RowFilter(refs=[ref]).query(batch_id(conn, batch))
            row = conn.execute(query).first()
            if row is None:
                raise NotFoundError(
                    f"batch {batch!r} has no job {ref!r}; `veo-batch jobs {quote(batch)}` lists "
                    "them"
                )
            view = job_view(row)
            view["history"] = [history_view(attempt) for _, attempt in attempts_of(conn, query)]
        return view

    def iter_jobs(self, batch: str) -> Iterator[dict[str, Any]]:
        """Every row of the batch, streamed."""
        with self.engine.connect() as conn:
            query = RowFilter().query(batch_id(conn, batch))
            for row in stream_jobs(conn, query):
                yield job_view(row)

    def export(
        self, batch: str, format: str, *, statuses: Sequence[str] = (), kinds: Sequence[str] = ()
    ) -> ExportText:
        """The batch as CSV or JSON Lines text, read as it is iterated: each row's input
        fields (loadable again) and its outcome. An unknown batch raises at once."""
        with self.engine.connect() as conn:
            bid = batch_id(conn, batch)
        return ExportText(self.engine, RowFilter(statuses, kinds).query(bid), format)

    def watch(
        self,
        batch: str,
        *,
        every: float = 1.0,
        wait_for_videos: bool = True,
        downloading: bool | None = None,
        wait_for_downloads: bool = False,
    ) -> Iterator[Progress]:
        """The batch's progress now, then every `every` seconds, until nothing is left to do
        for it (with `wait_for_downloads`, every video on disk or given up) or it stops being
        active (paused, cancelled)."""
        with self.engine.connect() as conn:
            bid = batch_id(conn, batch)
        if downloading is None:
            downloading = self.settings.download_dir is not None
        return follow(
            self.engine,
            bid,
            every=every,
            wait_for_videos=wait_for_videos,
            downloading=downloading,
            wait_for_downloads=wait_for_downloads,
        )

    def retry_downloads(self, batch: str) -> int:
        """The batch's videos whose downloads gave up are due again; how many."""
        with self.engine.begin() as conn:
            return transitions.retry_downloads(conn, batch_id(conn, batch), transitions.utcnow())

    def finish_batches(self) -> int:
        """Active batches with no row left to send or to follow become finished (as the
        scheduler and a run's end do); how many."""
        with self.engine.begin() as conn:
            return transitions.finish_batches(conn, transitions.utcnow())

    # ------------------------------------------------------------------ changes

    def rerun(
        self,
        batch: str,
        statuses: Sequence[str] = (JobStatus.FAILED,),
        kinds: Sequence[str] = (),
        *,
        refs: Sequence[str] = (),
        reviews: Sequence[str] = (),
        dry_run: bool = False,
        confirm_paid: bool = False,
    ) -> Rerun:
        """Rows back to work: sent again as new tasks, except timed-out rows, whose task is
        polled again. `refs` and `reviews` (say, the rows whose videos were rejected) narrow
        the choice. Sending a row that has (or may have) a paid task pays again: unless
        `confirm_paid`, such a rerun is refused with `UnconfirmedRerun` (which says how many
        rows and what they cost) and nothing changes. `dry_run` only looks."""
        rows = RowFilter(statuses, kinds, refs, reviews)
        paid = rows.paid()
        paid_for = list(paid.statuses) if paid is not None else []
        with self.engine.begin() as conn:  # counted and changed in one transaction
            bid = batch_id(conn, batch)
            paid_rows = count_jobs(conn, paid.query(bid)) if paid is not None else 0
            if dry_run or (paid_rows and not confirm_paid):
                matched = count_jobs(conn, rows.query(bid))
                adds = self.estimate_rows(model_counts(conn, bid, rows, resent_only=True))
                if dry_run:
                    return Rerun(
                        matched, paid_for, paid_rows, adds=adds.total, unpriced=adds.unpriced
                    )
                raise UnconfirmedRerun(matched, paid_rows, paid_for, adds.total, adds.unpriced)
            now = transitions.utcnow()
            deadline = timedelta(seconds=self.settings.poll_deadline)
            sent, polled = transitions.rerun(conn, bid, now, rows, deadline=deadline)
            state = transitions.reopen(conn, bid, now)
        return Rerun(sent + polled, paid_for, paid_rows, sent, polled, state=state)

    def set_budget(self, batch: str, budget: object | None) -> BatchSummary:
        """The most batch `batch` may spend (in VEO_CURRENCY; None: no cap), from now on. Every
        model its rows use must have a price. Raising it does not resume a batch paused by
        its budget: `resume` does."""
        checks = self._money_checks(budget)
        with self.engine.begin() as conn:
            bid = batch_id(conn, batch)
            priced = checks["priced"]
            if priced is not None:
                used = conn.execute(sa.select(Job.model).where(Job.batch_id == bid).distinct())
                missing = sorted(set(used.scalars()) - set(priced))
                if missing:
                    raise VeoBatchError(
                        f"batch {batch!r}: " + "; ".join(unpriced(model) for model in missing)
                    )
            transitions.set_budget(conn, bid, checks["budget"])
        return self.status(batch)

    def activity(self, batch: str, *, charts: bool = True) -> Activity:
        """The batch with how fast its rows end, why they fail, when they were sent and
        finished, and how long their videos took: aggregate queries, never the rows
        themselves. Without `charts`, only the counts and the pace (what a page polls every
        few seconds)."""
        now = transitions.utcnow()
        reasons, series, generation = None, None, None
        with self.engine.connect() as conn:
            summary = batch_summaries(conn, batch)[0]
            ended = activity.finished_since(conn, [summary.id], now - timedelta(minutes=1))
            if charts:
                reasons = activity.failure_reasons(conn, summary.id)
                series = activity.series(conn, summary.id, now)
                generation = activity.generation_times(conn, summary.id)
        return _paced(summary, ended.get(summary.id, 0), reasons, series, generation)

    def overview(self) -> list[Activity]:
        """Every batch (oldest first) with its counts, money and pace: the dashboard's first
        page. Only batches still at work (active or paused) have their pace counted."""
        since = transitions.utcnow() - timedelta(minutes=1)
        with self.engine.connect() as conn:
            summaries = batch_summaries(conn)
            working = [s.id for s in summaries if s.state in (BatchState.ACTIVE, BatchState.PAUSED)]
            ended = activity.finished_since(conn, working, since)
        return [_paced(summary, ended.get(summary.id, 0)) for summary in summaries]

    def estimate(self, batch: str) -> Estimate:
        """What the rows of `batch` not sent yet will cost, per model, what it has spent, and
        the requests left (submissions plus the polls expected)."""
        summary = self.status(batch, errors=False)
        with self.engine.connect() as conn:
            counts = model_counts(
                conn, summary.id, RowFilter([JobStatus.PENDING, JobStatus.QUEUED])
            )
        return self.estimate_rows(
            counts, spent=summary.spent, committed=summary.committed, budget=summary.budget
        )

    def estimate_rows(
        self,
        counts: Mapping[str, int],
        *,
        spent: int = 0,
        committed: int = 0,
        budget: int | None = None,
    ) -> Estimate:
        """What sending `counts` rows per model will cost (a dry run's estimate)."""
        return spend_rules.estimate(
            counts,
            Spending.of(self.settings),
            Pacing.of(self.settings),
            spent=spent,
            committed=committed,
            budget=budget,
        )

    def pause(self, batch: str, reason: str = "paused by hand") -> str:
        """Stop sending the batch's rows (requests in flight finish); its state afterwards."""
        return self._change(batch, "pause", lambda c, b, n: transitions.pause(c, b, reason, n))

    def resume(self, batch: str) -> str:
        """Let a paused (or finished) batch send again; its state afterwards."""
        return self._change(batch, "resume", transitions.resume)

    def cancel(self, batch: str) -> int:
        """Cancel the batch; the number of rows that will not be sent (tasks made finish)."""
        with self.engine.begin() as conn:
            return transitions.cancel(conn, batch_id(conn, batch), transitions.utcnow())

    def set_webhook(self, batch: str, url: str | None) -> None:
        """The URL told when the batch finishes or pauses (None: no longer told)."""
        if url is not None:
            self._check_webhook(url)
        with self.engine.begin() as conn:
            transitions.set_webhook(conn, batch_id(conn, batch), url)

    def deliver_webhooks(self) -> int:
        """Try each webhook call that is due once (a batch finished or paused); how many
        arrived. The scheduler does this on its own thread; `veo-batch run` at its end."""
        with webhooks.webhook_client(self.settings.webhook_allow_private) as http:
            return webhooks.deliver_due(
                self.engine,
                http,
                self.settings.webhook_secret,
                transitions.utcnow(),
                allow_private=self.settings.webhook_allow_private,
            )

    def _money_checks(self, budget: object | None) -> dict[str, Any]:
        """`budget` in micro-units, and the models with a price when every row must have one
        (a budget, or VEO_DAILY_BUDGET), for the loader's checks."""
        amount: int | None = None
        if budget is not None:
            try:
                amount = pricing.amount(budget)
            except ValueError as exc:
                raise VeoBatchError(f"budget: {budget!r} {exc}") from None
        priced = self.settings.prices if Spending.of(self.settings).needs_price(amount) else None
        return {"budget": amount, "priced": priced}

    def _check_webhook(self, url: str) -> str:
        return webhooks.check_target(url, allow_private=self.settings.webhook_allow_private)

    def _change(self, batch: str, action: str, change: Any) -> str:
        with self.engine.begin() as conn:
            bid = batch_id(conn, batch)
            changed = change(conn, bid, transitions.utcnow())
            state = transitions.batch_state(conn, bid) or ""
        if not changed:
            raise BatchStateError(f"batch {batch!r} is {state}: it cannot {action}", state)
        return state


def _paced(
    summary: BatchSummary,
    per_minute: int,
    reasons: list[tuple[str, str, int]] | None = None,
    series: activity.Series | None = None,
    generation: list[tuple[int, int]] | None = None,
) -> Activity:
    """A batch's activity, with its ETA at the pace of the last minute."""
    waiting = sum(summary.counts.get(status, 0) for status in OPEN)
    eta = waiting / per_minute * 60 if per_minute and waiting else None
    return Activity(
        summary,
        per_minute,
        eta,
        reasons or [],
        series or activity.Series(None, 60, [], []),
        generation or [],
    )


def refuse_invalid(result: LoadResult) -> None:
    """`InvalidJobs` (problems by line) if the load stored nothing for invalid rows."""
    if result.rejected:
        report = result.report
        more = report.total - len(report.problems)
        raise InvalidJobs(report.problems, more, source=report.source)


def job_view(row: sa.Row[Any]) -> dict[str, Any]:
    """A row as the faces show it: its key is `id`, times are UTC."""
    view = {
        name: utc(value) if isinstance(value, datetime) else value
        for name in JOB_VIEW_FIELDS
        for value in (output_value(row, name),)
    }
    view["id"] = view.pop("ref")
    stored: list[Any] = row.images or []
    view["images"] = [image_name(entry) for entry in stored]
    view["image_files"] = [found for entry in stored if (found := image_file(entry)) is not None]
    return view


def estimate_view(found: Estimate) -> dict[str, Any]:
    """An estimate as the faces show it in JSON: amounts as decimal text (None: unpriced)."""

    def text(amount: int | None) -> str | None:
        return None if amount is None else pricing.decimal_text(amount)

    return {
        "currency": found.currency,
        "models": [
            {"model": m.model, "rows": m.rows, "price": text(m.price), "total": text(m.total)}
            for m in found.models
        ],
        "rows": found.rows,
        "total": text(found.total),
        "unpriced": found.unpriced,
        "requests": found.requests,
        "polls_per_task": found.polls_per_task,
        "spent": text(found.spent),
        "committed": text(found.committed),
        "budget": text(found.budget),
        "left": text(found.left),
    }


def history_view(attempt: sa.Row[Any]) -> dict[str, Any]:
    """One submission, poll or download of a row."""
    return {
        "at": utc(attempt.at),
        "action": attempt.action,
        "http_status": attempt.http_status,
        "task_id": attempt.task_id,
        "remote_status": attempt.remote_status,
        "error": attempt.error,
        "error_kind": attempt.error_kind,
    }


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
