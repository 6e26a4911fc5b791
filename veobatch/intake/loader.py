"""Load a job file into a batch: check every row, store them in chunks, in one transaction.

One streaming pass does both: rows are checked and written chunk by chunk inside a single
transaction. If any row is invalid (and `skip_invalid` is off) writing stops, checking goes on
so the report lists every problem, and the transaction is rolled back: the database is left
exactly as it was. Running the same load again adds only rows the batch does not have yet.

Reading and checking is pure Python and holds the GIL; writing is mostly the database's own
work. Where the platform can fork, the file is read and checked in a child process that hands
chunks of checked rows to this one through a pipe, so the two halves run on two cores. (A
thread would not do: the SQLite driver releases the GIL for every row it steps, and a writer
thread then waits for the busy reading thread at every row.)
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from veobatch.catalog import ImageRange
from veobatch.forked import Forked
from veobatch.images.files import ImageInspector
from veobatch.intake.job_checker import JobChecker, StoredRow, describe
from veobatch.intake.problems import DEFAULT_MAX_PROBLEMS, ProblemReport
from veobatch.intake.raw_job import RawJob
from veobatch.lifecycle import transitions
from veobatch.states import ErrorKind, JobStatus
from veobatch.store.inserts import DuplicateRef, batch_for_load, row_writer

if TYPE_CHECKING:
    from veobatch.accounts.fitting import Fitting

# Rows checked, handed on and written at a time. A block checked a column at a time holds
# its rows, their columns and the rows to store at once: 5,000 rows held a million-row load
# at 101 MB (the processes' PSS together), 2,500 at 86 MB, in the same time.
CHUNK_ROWS = 2_500
ReadProgress = Callable[[int, int | None], None]  # rows read so far, bytes read (if known)
Position = Callable[[], int | None]  # where the reader is in the file, in bytes
Chunk = tuple[int, int | None, list[StoredRow]]  # rows read, bytes read, rows to store
_Columns = tuple[int, int | None, tuple[tuple[Any, ...], ...]]  # a Chunk's rows as columns
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
    # Local image files the rows name: distinct files, their bytes, copies made of them.
    local_images: tuple[int, int, int] = (0, 0, 0)
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
    progress: ReadProgress | None = None,
    position: Position | None = None,
    reader_process: bool | None = None,
    images: ImageInspector | None = None,
    budget: int | None = None,
    priced: Collection[str] | None = None,
    strict: bool = False,
    fitting: Fitting | None = None,
    lines: bool = True,
    again: Callable[[], Iterable[RawJob]] | None = None,
) -> LoadResult:
    """Check `rows` and (unless `dry_run`) store them as batch `batch`.

    When a row is invalid and `skip_invalid` is off, nothing is stored and `result.rejected`
    is true; `result.report` lists the problems either way. `reader_process` (default: where
    the platform can fork) reads and checks in a child process while this one writes.
    `images` checks the local image files rows name; without it, a path is refused.
    `budget` (micro-units) becomes the batch's, in the same transaction as its rows; with
    `priced`, a row whose model is not in it is refused (a budget cannot count it); `strict`
    refuses prompts mostly not in Latin script that would otherwise be a warning; with
    `fitting`, a row that no account serving its model can take is refused. Without
    `lines` (rows that came as data, not from a file) no line is stored with a row.

    `again` reads the same rows once more. With it, a load into a new batch remembers no id:
    the database's unique index on a batch's ids finds a duplicate, and the load is then made
    again from the start with ids remembered, to name every duplicate by its line (a file
    without duplicates, the common case, is read once and holds no memory per row).
    """

    def attempt(rows: Iterable[RawJob], trust_index: bool) -> LoadResult:
        checker = JobChecker(
            models, images=images, priced=priced, strict=strict, fitting=fitting, lines=lines
        )
        with _cyclic_gc_paused():
            return _load(
                engine,
                rows,
                batch,
                source,
                skip_invalid,
                dry_run,
                max_problems,
                progress,
                position,
                reader_process,
                checker,
                budget,
                trust_index,
            )

    if again is None:
        return attempt(rows, trust_index=False)
    try:
        return attempt(rows, trust_index=True)
    except DuplicateRef:
        return attempt(again(), trust_index=False)


def _load(
    engine: Engine | None,
    rows: Iterable[RawJob],
    batch: str,
    source: str,
    skip_invalid: bool,
    dry_run: bool,
    max_problems: int,
    progress: ReadProgress | None,
    position: Position | None,
    reader_process: bool | None,
    checker: JobChecker,
    budget: int | None,
    trust_index: bool = False,
) -> LoadResult:
    result = LoadResult(
        batch=batch, report=ProblemReport(source, max_problems), skip_invalid=skip_invalid
    )
    if dry_run or engine is None:
        for rows_read, bytes_read, _ in _chunks(rows, checker, result, position):
            if progress is not None:
                progress(rows_read, bytes_read)
        return _summarize(result, checker)
    if reader_process is None:
        reader_process = "fork" in multiprocessing.get_all_start_methods()
    with engine.connect() as conn, conn.begin() as transaction:
        checker.batch_id, result.created = batch_for_load(conn, batch, source, budget)
        checker.remember_ids = not (trust_index and result.created)
        if reader_process:
            chunks: Iterator[Chunk] = _ReaderProcess(rows, checker, result, position).chunks()
        else:
            chunks = _chunks(rows, checker, result, position)
        with row_writer(conn, fresh_batch=result.created) as write:
            for rows_read, bytes_read, chunk in chunks:
                if chunk:
                    result.offered += len(chunk)
                    result.stored += write(chunk)
                if progress is not None:
                    progress(rows_read, bytes_read)
        if not reader_process:
            _summarize(result, checker)
        if result.rejected:
            transaction.rollback()
            result.stored = result.offered = 0
        elif result.stored and not result.created:
            transitions.reopen(conn, checker.batch_id, transitions.utcnow())
    return result


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Loading allocates millions of short-lived tuples, all freed by reference counting;
    the cycle collector would only walk them again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _chunks(
    rows: Iterable[RawJob], checker: JobChecker, result: LoadResult, position: Position | None
) -> Iterator[Chunk]:
    """Checked rows to store, one chunk per `CHUNK_ROWS` rows read; problems go to the report.

    Once a row is invalid without --skip-invalid, the chunks are empty (nothing will be
    stored; unless the database finds the duplicates, see `keep_all`), but every row is
    still checked so that the report is complete.
    """
    report, skip_invalid, check = result.report, result.skip_invalid, checker.check
    # Rows are stored until a row is invalid without --skip-invalid (nothing will be kept
    # then), unless the database finds the duplicate ids (`remember_ids` off): every row
    # then goes on to it, invalid ones as failed, for the transaction to be rolled back.
    keep_all = skip_invalid or not checker.remember_ids
    storing = True
    count = 0
    rows = iter(rows)
    while block := list(itertools.islice(rows, CHUNK_ROWS)):
        count += len(block)
        # A block of valid rows is checked a column at a time; one with anything to say
        # about a row, row by row, to say it.
        chunk = checker.check_plain(block)
        if chunk is None:
            chunk = []
            for raw in block:
                row, problems = check(raw)
                if problems:
                    report.add_row(problems)
                    if not keep_all:
                        storing = False
                    elif row is not None:
                        chunk.append((*row[:-3], _FAILED, describe(problems), _INVALID))
                        if skip_invalid:
                            result.invalid_kept += 1
                elif storing:
                    chunk.append(row)  # type: ignore[arg-type]  # a row without problems
        yield count, position() if position else None, chunk if storing else []
    result.rows = count
    result.valid = count - report.invalid_rows
    if count % CHUNK_ROWS == 0:  # (a last chunk, even empty, says the final position)
        yield count, position() if position else None, []


def _summarize(result: LoadResult, checker: JobChecker) -> LoadResult:
    result.models = Counter(checker.model_counts)
    result.image_counts = Counter(checker.image_counts)
    result.ignored_fields = checker.ignored_fields
    if checker.images is not None:
        result.local_images = checker.images.summary()
    result.report.warnings = checker.warnings
    result.report.warning_count = checker.warning_count
    return result


class _ReaderProcess:
    """`_chunks` run in a forked child; its chunks and final counts arrive through a pipe."""

    def __init__(
        self,
        rows: Iterable[RawJob],
        checker: JobChecker,
        result: LoadResult,
        position: Position | None,
    ) -> None:
        self.result = result

        def produce() -> Iterator[_Columns | LoadResult]:
            # A chunk crosses the pipe as columns: pickling 12 tuples of a chunk's values
            # took a third of the time of pickling its rows, a tuple of 12 each (the reading
            # process is the slower of the two; zip makes the rows again in the writing one).
            for rows_read, bytes_read, chunk in _chunks(rows, checker, result, position):
                yield rows_read, bytes_read, tuple(zip(*chunk, strict=True))
            yield _summarize(result, checker)

        # Started before the caller opens a COPY: the child needs no database.
        self.child = Forked(produce, "veo-batch-reader", "the process reading the file")

    def chunks(self) -> Iterator[Chunk]:
        try:
            for message in self.child.values():
                if isinstance(message, LoadResult):
                    self._take_counts(message)
                else:
                    rows_read, bytes_read, columns = message
                    yield rows_read, bytes_read, list(zip(*columns, strict=True))
        finally:
            self.child.stop()

    def _take_counts(self, child: LoadResult) -> None:
        result = self.result
        result.rows, result.valid, result.invalid_kept = child.rows, child.valid, child.invalid_kept
        result.report, result.models, result.image_counts = (
            child.report,
            child.models,
            child.image_counts,
        )
        result.ignored_fields = child.ignored_fields
        result.local_images = child.local_images
