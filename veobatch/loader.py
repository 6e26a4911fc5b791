"""Load a job file into a batch: check every row, store them in chunks, in one transaction.

One streaming pass does both: rows are checked and written chunk by chunk inside a single
transaction. If any row is invalid (and `skip_invalid` is off) writing stops, checking goes on
so the report lists every problem, and the transaction is rolled back: the database is left
exactly as it was. Running the same load again adds only rows the batch does not have yet.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from queue import Queue

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.bulk import Writer, row_writer
from veobatch.catalog import ImageRange
from veobatch.errors import BatchStateError
from veobatch.jobspec import JobChecker, RawJob, StoredRow, describe
from veobatch.models import Batch
from veobatch.problems import DEFAULT_MAX_PROBLEMS, ProblemReport
from veobatch.states import BatchState, ErrorKind, JobStatus

CHUNK_ROWS = 5_000
Progress = Callable[[int], None]  # called with the number of rows read so far
_FAILED, _INVALID = JobStatus.FAILED.value, ErrorKind.INVALID.value


@dataclass
class LoadResult:
    batch: str
    rows: int = 0  # rows read from the file
    valid: int = 0
    stored: int = 0  # rows inserted (or replacing rows stored invalid before)
    offered: int = 0  # rows handed to the database
    invalid_kept: int = 0  # invalid rows stored as failed (--skip-invalid)
    report: ProblemReport = field(default_factory=lambda: ProblemReport(""))
    models: Counter[str] = field(default_factory=Counter)
    image_counts: Counter[int] = field(default_factory=Counter)
    ignored_fields: set[str] = field(default_factory=set)
    created: bool = False  # the batch is new
    skip_invalid: bool = False

    @property
    def already_present(self) -> int:
        """Rows the batch already had, from an earlier load of the same file."""
        return self.offered - self.stored

    @property
    def rejected(self) -> bool:
        """Invalid rows without --skip-invalid: nothing was stored."""
        return bool(self.report) and not self.skip_invalid


def load_rows(
    engine: Engine | None,
    rows: Iterable[RawJob],
    *,
    batch: str,
    source: str,
    models: Mapping[str, ImageRange],
    skip_invalid: bool = False,
    dry_run: bool = False,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    progress: Progress | None = None,
) -> LoadResult:
    """Check `rows` and (unless `dry_run`) store them as batch `batch`.

    When a row is invalid and `skip_invalid` is off, nothing is stored and `result.rejected`
    is true; `result.report` lists the problems either way.
    """
    result = LoadResult(
        batch=batch, report=ProblemReport(source, max_problems), skip_invalid=skip_invalid
    )
    checker = JobChecker(models)
    if dry_run or engine is None:
        for _ in _chunks(rows, checker, result, progress):
            pass
    else:
        with engine.connect() as conn, conn.begin() as transaction:
            checker.batch_id, result.created = _batch_for_load(conn, batch, source)
            with row_writer(conn, fresh_batch=result.created) as write:
                _write_behind(write, _chunks(rows, checker, result, progress), result)
            if result.rejected:
                transaction.rollback()
                result.stored = result.offered = 0
            elif result.stored and not result.created:
                _reopen(conn, checker.batch_id)
    result.models = Counter(checker.model_counts)
    result.image_counts = Counter(checker.image_counts)
    result.ignored_fields = checker.ignored_fields
    return result


def _chunks(
    rows: Iterable[RawJob], checker: JobChecker, result: LoadResult, progress: Progress | None
) -> Iterator[list[StoredRow]]:
    """Checked rows to store, `CHUNK_ROWS` at a time; problems go to `result.report`.

    Once a row is invalid without --skip-invalid, nothing more is yielded (nothing will be
    stored), but every row is still checked so that the report is complete.
    """
    report, skip_invalid, check = result.report, result.skip_invalid, checker.check
    chunk: list[StoredRow] = []
    count = 0
    for count, raw in enumerate(rows, 1):
        row, problems = check(raw)
        if problems:
            report.add_row(problems)
            if row is not None and skip_invalid:
                chunk.append((*row[:-3], _FAILED, describe(problems), _INVALID))
                result.invalid_kept += 1
        elif not report or skip_invalid:
            chunk.append(row)  # type: ignore[arg-type]  # a row without problems is not None
        if len(chunk) >= CHUNK_ROWS:
            yield chunk
            chunk = []
            if progress is not None:
                progress(count)
    result.rows = count
    result.valid = count - report.invalid_rows
    if chunk and (not report or skip_invalid):
        yield chunk
    if progress is not None:
        progress(count)


def _write_behind(write: Writer, chunks: Iterator[list[StoredRow]], result: LoadResult) -> None:
    """Store chunks on a second thread while this one reads and checks the next ones.

    The database drivers do their share without holding the GIL (SQLite's statement steps,
    libpq's socket writes), so reading and writing overlap on two cores.
    """
    queue: Queue[list[StoredRow] | None] = Queue(maxsize=4)
    failure: list[BaseException] = []

    def drain() -> None:
        while (chunk := queue.get()) is not None:
            if failure:
                continue
            try:
                result.stored += write(chunk)
                result.offered += len(chunk)
            except BaseException as exc:  # re-raised on the reading thread below
                failure.append(exc)

    writer = threading.Thread(target=drain, name="veo-batch-writer", daemon=True)
    writer.start()
    try:
        for chunk in chunks:
            if failure:
                break
            queue.put(chunk)
    finally:
        queue.put(None)
        writer.join()
    if failure:
        raise failure[0]


def _batch_for_load(conn: Connection, name: str, source: str) -> tuple[int, bool]:
    """The id of batch `name`, created if needed; True when it was created."""
    found = conn.execute(sa.select(Batch.id, Batch.state).where(Batch.name == name)).first()
    if found is None:
        batch_id = conn.execute(
            sa.insert(Batch)
            .values(name=name, source=source, state=BatchState.ACTIVE.value)
            .returning(Batch.id)
        ).scalar_one()
        return batch_id, True
    if found.state == BatchState.CANCELLED:
        raise BatchStateError(
            f"batch {name!r} was cancelled; load into a new batch with --batch NAME"
        )
    return found.id, False


def _reopen(conn: Connection, batch_id: int) -> None:
    """New rows in a finished batch make it active again."""
    conn.execute(
        sa.update(Batch)
        .where(Batch.id == batch_id, Batch.state == BatchState.FINISHED.value)
        .values(state=BatchState.ACTIVE.value)
    )
