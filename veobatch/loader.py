"""Load a job file into a batch: check every row, store them in chunks, in one transaction.

One streaming pass does both: rows are checked and written chunk by chunk inside a single
transaction. If any row is invalid (and `skip_invalid` is off) writing stops, checking goes on
so the report lists every problem, and the transaction is rolled back: the database is left
exactly as it was. Running the same load again adds only rows the batch does not have yet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from veobatch.bulk import row_writer
from veobatch.catalog import ImageRange
from veobatch.errors import BatchStateError
from veobatch.jobspec import JobChecker, JobRow, RawJob, describe
from veobatch.models import Batch
from veobatch.problems import DEFAULT_MAX_PROBLEMS, ProblemReport
from veobatch.states import BatchState, ErrorKind, JobStatus

CHUNK_ROWS = 5_000
Progress = Callable[[int], None]  # called with the number of rows read so far


@dataclass
class LoadResult:
    batch: str
    rows: int = 0  # rows read from the file
    valid: int = 0
    stored: int = 0  # rows inserted (or replacing rows stored invalid before)
    report: ProblemReport = field(default_factory=lambda: ProblemReport(""))
    models: Counter[str] = field(default_factory=Counter)
    image_counts: Counter[int] = field(default_factory=Counter)
    ignored_fields: set[str] = field(default_factory=set)
    created: bool = False  # the batch is new
    offered: int = 0  # rows handed to the database
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
        for _ in _checked_rows(rows, checker, result, progress):
            pass
    else:
        with engine.connect() as conn, conn.begin() as transaction:
            batch_id, result.created = _batch_for_load(conn, batch, source)
            _store(conn, batch_id, _checked_rows(rows, checker, result, progress), result)
            if result.rejected:
                transaction.rollback()
                result.stored = result.offered = 0
            elif result.stored and not result.created:
                _reopen(conn, batch_id)
    result.ignored_fields = checker.ignored_fields
    return result


def _checked_rows(
    rows: Iterable[RawJob], checker: JobChecker, result: LoadResult, progress: Progress | None
) -> Iterable[tuple[JobRow, str | None]]:
    """Each storable row with its error text (None when valid); counts and reports on the way."""
    report = result.report
    for raw in rows:
        result.rows += 1
        row, problems = checker.check(raw)
        if progress is not None and result.rows % CHUNK_ROWS == 0:
            progress(result.rows)
        if problems:
            report.add_row(problems)
            if row is not None:
                yield row, describe(problems)
            continue
        assert row is not None
        result.valid += 1
        result.models[row.model] += 1
        result.image_counts[row.image_count] += 1
        yield row, None
    if progress is not None:
        progress(result.rows)


def _store(
    conn: Connection,
    batch_id: int,
    rows: Iterable[tuple[JobRow, str | None]],
    result: LoadResult,
) -> None:
    pending, failed, invalid = (
        JobStatus.PENDING.value,
        JobStatus.FAILED.value,
        ErrorKind.INVALID.value,
    )
    chunk: list[tuple[Any, ...]] = []
    writing = True
    with row_writer(conn, fresh_batch=result.created) as write:
        for row, error in rows:
            if not writing:
                continue  # keep checking, to report every problem
            if error is not None and not result.skip_invalid:
                writing = False
                chunk.clear()
                continue
            chunk.append((
                batch_id, row.ref, row.line, row.prompt, row.model, row.images, row.aspect_ratio,
                row.enhance_prompt, row.extra,
                failed if error else pending, error, invalid if error else None,
            ))  # fmt: skip
            if len(chunk) >= CHUNK_ROWS:
                result.offered += len(chunk)
                result.stored += write(chunk)
                chunk.clear()
        if chunk and writing:
            result.offered += len(chunk)
            result.stored += write(chunk)


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
